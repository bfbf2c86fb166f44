//! Invariant violations in each honest instance's final stock: negative
//! levels, totals not conserved, levels that are not the replay of the
//! applied outcomes. The inventory audit (`domain::inventory::audit`) does
//! the judging; this check feeds it, per instance, the agreed outcomes the
//! instance's applied offsets cover.

use std::collections::BTreeSet;

use domain::inventory::audit::{Audit, LevelRow};
use domain::inventory::partition_for_sku;
use protocol::envelope::EnvelopeVerdict;
use protocol::position::Partition;
use serde::Serialize;

use super::view::View;
use super::{Finding, FindingDetail};
use crate::history::{InstanceFinal, InstanceId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvariantViolation {
    pub instance: InstanceId,
    /// The audit's account of the violation (starts with its spec id).
    pub violation: String,
}

/// covers: inventory.ExactlyOnceApplication, inventory.LevelsEqualReplay, inventory.NoNegativeStock, inventory.StockConservedPerSku, inventory.EachAcceptedCommandAppliedOnce, inventory.RejectedCommandsChangeNothing, inventory.NoCommandCrossesPartitions, inventory.LevelWithinMaximum, inventory.OneLevelPerWarehouseAndSku, inventory.EveryLevelHasTotals
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    let partitions = view.run.input_partitions;
    for instance in &view.honest {
        let audited = audited_partitions(view, instance);
        let mut audit = Audit::new(partitions).with_limits(view.run.inventory.into());
        for slot in view.fresh_slots() {
            let position = slot.position;
            if !audited.contains(&position.partition)
                || position.offset > instance.applied_offset(position.partition)
            {
                continue;
            }
            let command = view
                .command_at(position)
                .expect("an audited partition's applied commands are all known");
            audit.record_outcome(
                position,
                &command,
                slot.envelope.verdict == EnvelopeVerdict::Accepted,
            );
        }
        let levels: Vec<LevelRow> = instance
            .stock
            .iter()
            .filter(|row| audited.contains(&partition_for_sku(&row.sku, partitions)))
            .map(|row| (row.warehouse.clone(), row.sku.clone(), row.quantity))
            .collect();
        for violation in audit.check_levels(levels).violations {
            findings.push(Finding::new(
                violation.invariant(),
                format!("instance {}: {violation}", instance.instance),
                Vec::new(),
                FindingDetail::Invariant(InvariantViolation {
                    instance: instance.instance,
                    violation: violation.to_string(),
                }),
            ));
        }
    }
}

/// The partitions whose applied prefix is fully known for `instance`: every
/// input record up to its applied offset has an agreed publication, and
/// every command evaluated there is known. Levels of other partitions cannot
/// be recomputed, so they are not audited (and [`notes`] says so).
fn audited_partitions(view: &View<'_>, instance: &InstanceFinal) -> BTreeSet<Partition> {
    (0..view.run.input_partitions)
        .filter(|&partition| {
            let applied = instance.applied_offset(partition);
            let records_published = view
                .input
                .range((partition, i64::MIN)..=(partition, applied))
                .all(|(record, _)| view.kept.contains_key(record));
            let commands_known = view
                .fresh_slots()
                .filter(|slot| {
                    slot.position.partition == partition && slot.position.offset <= applied
                })
                .all(|slot| view.command_at(slot.position).is_some());
            records_published && commands_known
        })
        .collect()
}

/// The instances and partitions whose stock was not audited.
pub(super) fn notes(view: &View<'_>) -> Vec<String> {
    view.honest
        .iter()
        .filter_map(|instance| {
            let audited = audited_partitions(view, instance);
            let skipped: Vec<Partition> = (0..view.run.input_partitions)
                .filter(|partition| !audited.contains(partition))
                .collect();
            (!skipped.is_empty()).then(|| {
                format!(
                    "instance {}: partitions {skipped:?} not audited (an applied record has no \
                     agreed publication, or an applied command is unknown)",
                    instance.instance
                )
            })
        })
        .collect()
}
