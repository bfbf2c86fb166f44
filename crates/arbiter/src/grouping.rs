//! Causal groups: connected components of fresh commands over the entity
//! keys they touch.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use domain::EntityKey;

/// One causal group: indices into the batch's fresh commands, in log order.
/// Groups are numbered (their ordinal is their place in the returned list)
/// by their first command.
pub(crate) type CausalGroup = Vec<usize>;

/// Splits the fresh commands of a batch, given each one's touched keys in
/// log order, into groups that share no key. A command touching no key is a
/// group of its own.
///
/// Union-find whose root is always the smallest command index of its
/// component, so a component's root is its first command in log order and
/// groups come out numbered by it without any sort.
///
/// spec: arbiter.PartitionBatchIntoCausalGroups, arbiter.DistinctGroupsShareNoKey, arbiter.CommandKeysInsideItsGroup, arbiter.GroupHasCommands
pub(crate) fn causal_groups<K: AsRef<[EntityKey]>>(touched_keys: &[K]) -> Vec<CausalGroup> {
    let mut parent: Vec<usize> = (0..touched_keys.len()).collect();
    let mut first_toucher: BTreeMap<&EntityKey, usize> = BTreeMap::new();
    for (command, keys) in touched_keys.iter().enumerate() {
        for key in keys.as_ref() {
            match first_toucher.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(command);
                }
                Entry::Occupied(entry) => union(&mut parent, *entry.get(), command),
            }
        }
    }

    const NO_GROUP: usize = usize::MAX;
    let mut group_of_root = vec![NO_GROUP; touched_keys.len()];
    let mut groups: Vec<CausalGroup> = Vec::new();
    for command in 0..touched_keys.len() {
        let root = find(&mut parent, command);
        if root == command {
            group_of_root[root] = groups.len();
            groups.push(vec![command]);
        } else {
            let group = group_of_root[root];
            assert_ne!(
                group, NO_GROUP,
                "a root precedes every other command of its component"
            );
            groups[group].push(command);
        }
    }
    groups
}

fn find(parent: &mut [usize], mut node: usize) -> usize {
    while parent[node] != node {
        // Path halving: every visited node skips to its grandparent.
        parent[node] = parent[parent[node]];
        node = parent[node];
    }
    node
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (root_a, root_b) = (find(parent, a), find(parent, b));
    let (first, later) = (root_a.min(root_b), root_a.max(root_b));
    parent[later] = first;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn keys(names: &[&str]) -> Vec<EntityKey> {
        names
            .iter()
            .map(|n| EntityKey::new((*n).to_owned()))
            .collect()
    }

    /// covers: arbiter.PartitionBatchIntoCausalGroups, arbiter.GroupHasCommands
    #[test]
    fn commands_sharing_a_key_transitively_form_one_group_numbered_by_first_command() {
        let touched = vec![
            keys(&["a"]),      // 0
            keys(&["b"]),      // 1
            keys(&[]),         // 2: touches nothing, a group of its own
            keys(&["c", "b"]), // 3: joins 1
            keys(&["c", "a"]), // 4: joins 0 and (1, 3) through c
            keys(&["d"]),      // 5
        ];
        assert_eq!(
            causal_groups(&touched),
            vec![vec![0, 1, 3, 4], vec![2], vec![5]]
        );
        assert!(causal_groups::<Vec<EntityKey>>(&[]).is_empty());
    }

    fn touched_keys_strategy() -> impl Strategy<Value = Vec<Vec<EntityKey>>> {
        let key = (0u8..12).prop_map(|k| EntityKey::new(format!("k{k}")));
        let command_keys = proptest::collection::btree_set(key, 0..4)
            .prop_map(|set| set.into_iter().collect::<Vec<_>>());
        proptest::collection::vec(command_keys, 0..40)
    }

    /// Components by brute force: repeat merging until nothing changes.
    fn reference_components(touched: &[Vec<EntityKey>]) -> BTreeSet<BTreeSet<usize>> {
        let mut components: Vec<(BTreeSet<usize>, BTreeSet<&EntityKey>)> = touched
            .iter()
            .enumerate()
            .map(|(i, keys)| (BTreeSet::from([i]), keys.iter().collect()))
            .collect();
        'merge: loop {
            for a in 0..components.len() {
                for b in a + 1..components.len() {
                    if !components[a].1.is_disjoint(&components[b].1) {
                        let (commands, keys) = components.remove(b);
                        components[a].0.extend(commands);
                        components[a].1.extend(keys);
                        continue 'merge;
                    }
                }
            }
            break;
        }
        components
            .into_iter()
            .map(|(commands, _)| commands)
            .collect()
    }

    proptest! {
        /// covers: arbiter.DistinctGroupsShareNoKey, arbiter.CommandKeysInsideItsGroup, arbiter.GroupHasCommands, arbiter.PartitionBatchIntoCausalGroups
        #[test]
        fn groups_are_the_connected_components_in_log_order(touched in touched_keys_strategy()) {
            let groups = causal_groups(&touched);
            let group_keys: Vec<BTreeSet<&EntityKey>> = groups
                .iter()
                .map(|group| group.iter().flat_map(|&c| &touched[c]).collect())
                .collect();
            for (a, keys_a) in group_keys.iter().enumerate() {
                for keys_b in &group_keys[a + 1..] {
                    prop_assert!(keys_a.is_disjoint(keys_b));
                }
            }
            for group in &groups {
                prop_assert!(!group.is_empty());
                prop_assert!(group.windows(2).all(|pair| pair[0] < pair[1]));
            }
            prop_assert!(groups.windows(2).all(|pair| pair[0][0] < pair[1][0]));
            let every_command: Vec<usize> = {
                let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
                all.sort_unstable();
                all
            };
            prop_assert_eq!(every_command, (0..touched.len()).collect::<Vec<_>>());
            let found: BTreeSet<BTreeSet<usize>> =
                groups.iter().map(|g| g.iter().copied().collect()).collect();
            prop_assert_eq!(found, reference_components(&touched));
        }
    }
}
