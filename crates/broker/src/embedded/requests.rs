//! The broker's answers: decoded Kafka requests in, responses out, over the
//! partition logs. No I/O and no clock; the server decides when a fetch that
//! found nothing is asked again.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::log::{PartitionLog, split_batches};

const NODE_ID: i32 = 1;
const EARLIEST_TIMESTAMP: i64 = -2;
const LATEST_TIMESTAMP: i64 = -1;
/// The most partitions one topic may have here (every partition is a log in
/// this process's memory).
const MAX_PARTITIONS: i32 = 1_024;

/// The request versions this broker speaks. A client picks the highest both
/// sides know; anything else is refused. No leader epochs (Metadata below
/// v7), no transactions, no consumer-group membership: a group's committed
/// offsets are kept and read back, nothing more.
pub const SUPPORTED_VERSIONS: [(ApiKey, i16, i16); 10] = [
    (ApiKey::Produce, 3, 7),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 1, 5),
    (ApiKey::Metadata, 1, 6),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 4),
    (ApiKey::InitProducerId, 0, 1),
    (ApiKey::OffsetCommit, 2, 7),
    (ApiKey::OffsetFetch, 1, 5),
];

pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    SUPPORTED_VERSIONS
        .iter()
        .any(|(key, min, max)| *key == api_key && (*min..=*max).contains(&version))
}

/// Every topic's partition logs and the broker's own address.
#[derive(Debug)]
pub struct BrokerState {
    topics: BTreeMap<String, Vec<PartitionLog>>,
    retention_bytes: usize,
    next_producer_id: i64,
    /// (group, topic, partition) -> committed offset.
    committed: BTreeMap<(String, String, i32), i64>,
    host: StrBytes,
    port: i32,
}

/// What a fetch found: the response, and whether it is worth sending now
/// (it has `min_bytes` of records, or an error to report).
#[derive(Debug)]
pub struct FetchResult {
    pub response: FetchResponse,
    pub ready: bool,
}

impl BrokerState {
    pub fn new(host: &str, port: u16, retention_bytes: usize) -> Self {
        Self {
            topics: BTreeMap::new(),
            retention_bytes,
            next_producer_id: 1,
            committed: BTreeMap::new(),
            host: StrBytes::from_string(host.to_owned()),
            port: i32::from(port),
        }
    }

    /// Creates a topic; `Err` carries the Kafka error code.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), ResponseError> {
        if self.topics.contains_key(name) {
            return Err(ResponseError::TopicAlreadyExists);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(ResponseError::InvalidPartitions);
        }
        let logs = (0..partitions)
            .map(|_| PartitionLog::new(self.retention_bytes))
            .collect();
        self.topics.insert(name.to_owned(), logs);
        Ok(())
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionLog> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get_mut(topic)?.get_mut(index)
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionLog> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.get(index)
    }

    pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(
                SUPPORTED_VERSIONS
                    .iter()
                    .map(|(key, min, max)| {
                        ApiVersion::default()
                            .with_api_key(*key as i16)
                            .with_min_version(*min)
                            .with_max_version(*max)
                    })
                    .collect(),
            )
    }

    pub fn metadata(&self, request: &MetadataRequest) -> MetadataResponse {
        let names: Vec<String> = match &request.topics {
            None => self.topics.keys().cloned().collect(),
            Some(topics) => topics
                .iter()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str().to_owned()))
                .collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| {
                let topic = MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
                match self.topics.get(&name) {
                    None => topic.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Some(logs) => topic.with_partitions(
                        (0..logs.len())
                            .map(|index| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(
                                        i32::try_from(index).expect("bounded by MAX_PARTITIONS"),
                                    )
                                    .with_leader_id(BrokerId(NODE_ID))
                                    .with_leader_epoch(-1)
                                    .with_replica_nodes(vec![BrokerId(NODE_ID)])
                                    .with_isr_nodes(vec![BrokerId(NODE_ID)])
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(self.host.clone())
                    .with_port(self.port),
            ])
            .with_cluster_id(Some(StrBytes::from_static_str("tribunal-embedded")))
            .with_controller_id(BrokerId(NODE_ID))
            .with_topics(topics)
    }

    /// Appends every partition's batches; a partition answers with the base
    /// offset of its first batch or the first batch's error (a later batch's
    /// error stops that partition's appends there).
    pub fn produce(&mut self, request: &ProduceRequest) -> ProduceResponse {
        let responses = each_partition(
            &request.topic_data,
            |topic| (&topic.name, &topic.partition_data),
            |name, data| {
                let answer = PartitionProduceResponse::default().with_index(data.index);
                let Some(log) = self.partition_mut(name, data.index) else {
                    return answer
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_base_offset(-1);
                };
                let appended = data
                    .records
                    .as_ref()
                    .ok_or(ResponseError::CorruptMessage)
                    .and_then(split_batches)
                    .and_then(|batches| {
                        let mut first = None;
                        for (header, batch) in &batches {
                            let offset = log.append(header, batch)?;
                            first.get_or_insert(offset);
                        }
                        Ok(first.expect("split_batches yields at least one batch"))
                    });
                match appended {
                    Ok(base_offset) => answer
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(log.log_start()),
                    Err(error) => answer.with_error_code(error.code()).with_base_offset(-1),
                }
            },
            |name, partitions| {
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partitions)
            },
        );
        ProduceResponse::default().with_responses(responses)
    }

    pub fn fetch(&self, request: &FetchRequest) -> FetchResult {
        let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
        let mut total = 0_usize;
        let mut any_error = false;
        let responses = each_partition(
            &request.topics,
            |topic| (&topic.topic, &topic.partitions),
            |name, wanted| {
                let answer = PartitionData::default().with_partition_index(wanted.partition);
                let Some(log) = self.partition(name, wanted.partition) else {
                    any_error = true;
                    return answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                let answer = answer
                    .with_high_watermark(log.log_end())
                    .with_last_stable_offset(log.log_end())
                    .with_log_start_offset(log.log_start());
                let budget = usize::try_from(wanted.partition_max_bytes)
                    .unwrap_or(0)
                    .min(max_bytes.saturating_sub(total));
                if budget == 0 && total > 0 {
                    return answer;
                }
                match log.read(wanted.fetch_offset, budget) {
                    Ok(records) => {
                        total += records.len();
                        answer.with_records(Some(records))
                    }
                    Err(error) => {
                        any_error = true;
                        answer.with_error_code(error.code())
                    }
                }
            },
            |name, partitions| {
                FetchableTopicResponse::default()
                    .with_topic(name)
                    .with_partitions(partitions)
            },
        );
        let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0).max(1);
        FetchResult {
            response: FetchResponse::default().with_responses(responses),
            ready: any_error || total >= min_bytes,
        }
    }

    pub fn list_offsets(&self, request: &ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = each_partition(
            &request.topics,
            |topic| (&topic.name, &topic.partitions),
            |name, wanted| {
                let answer = ListOffsetsPartitionResponse::default()
                    .with_partition_index(wanted.partition_index)
                    .with_timestamp(-1)
                    .with_leader_epoch(-1);
                let Some(log) = self.partition(name, wanted.partition_index) else {
                    return answer
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_offset(-1);
                };
                let offset = match wanted.timestamp {
                    LATEST_TIMESTAMP => log.log_end(),
                    EARLIEST_TIMESTAMP => log.log_start(),
                    timestamp => log.offset_for_timestamp(timestamp).unwrap_or(-1),
                };
                answer.with_offset(offset)
            },
            |name, partitions| {
                ListOffsetsTopicResponse::default()
                    .with_name(name)
                    .with_partitions(partitions)
            },
        );
        ListOffsetsResponse::default().with_topics(topics)
    }

    pub fn create_topics(&mut self, request: &CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = if topic.num_partitions == -1 {
                    1
                } else {
                    topic.num_partitions
                };
                let result = if !matches!(topic.replication_factor, -1 | 1) {
                    Err(ResponseError::InvalidReplicationFactor)
                } else if request.validate_only {
                    Ok(())
                } else {
                    self.create_topic(topic.name.0.as_str(), partitions)
                };
                CreatableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(result.err().map_or(0, |error| error.code()))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    /// This broker is every group's coordinator (nothing joins a group here:
    /// librdkafka only asks because consumers carry a `group.id`).
    pub fn find_coordinator(&self, _request: &FindCoordinatorRequest) -> FindCoordinatorResponse {
        FindCoordinatorResponse::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(self.host.clone())
            .with_port(self.port)
    }

    /// Stores a group's offsets for partitions that exist; no generation
    /// is checked, since no group has members here.
    pub fn offset_commit(&mut self, request: &OffsetCommitRequest) -> OffsetCommitResponse {
        let group = request.group_id.0.as_str();
        let topics = each_partition(
            &request.topics,
            |topic| (&topic.name, &topic.partitions),
            |name, commit| {
                let error_code = if self.partition(name, commit.partition_index).is_some() {
                    let key = (group.to_owned(), name.to_owned(), commit.partition_index);
                    self.committed.insert(key, commit.committed_offset);
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                OffsetCommitResponsePartition::default()
                    .with_partition_index(commit.partition_index)
                    .with_error_code(error_code)
            },
            |name, partitions| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            },
        );
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// A group's committed offsets; -1 where nothing was committed.
    pub fn offset_fetch(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        let group = request.group_id.0.as_str();
        let topics = each_partition(
            request.topics.as_deref().unwrap_or_default(),
            |topic| (&topic.name, &topic.partition_indexes),
            |name, &partition| {
                let key = (group.to_owned(), name.to_owned(), partition);
                OffsetFetchResponsePartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(self.committed.get(&key).copied().unwrap_or(-1))
                    .with_committed_leader_epoch(-1)
            },
            |name, partitions| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            },
        );
        OffsetFetchResponse::default().with_topics(topics)
    }

    pub fn init_producer_id(&mut self) -> InitProducerIdResponse {
        let producer_id = self.next_producer_id;
        self.next_producer_id += 1;
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0)
    }
}

/// Answers every partition of every topic a request names, in the request's
/// order, and wraps each topic's answers.
fn each_partition<Topic, Partition, Answer, TopicAnswer>(
    topics: &[Topic],
    parts: impl Fn(&Topic) -> (&TopicName, &[Partition]),
    mut answer: impl FnMut(&str, &Partition) -> Answer,
    topic_answer: impl Fn(TopicName, Vec<Answer>) -> TopicAnswer,
) -> Vec<TopicAnswer> {
    topics
        .iter()
        .map(|topic| {
            let (name, partitions) = parts(topic);
            let answers = partitions
                .iter()
                .map(|partition| answer(name.0.as_str(), partition))
                .collect();
            topic_answer(name.clone(), answers)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    use super::super::log::tests::batch;
    use super::*;

    pub(crate) fn topic_name(name: &str) -> TopicName {
        TopicName(StrBytes::from_string(name.to_owned()))
    }

    pub(crate) fn produce(
        state: &mut BrokerState,
        topic: &str,
        partition: i32,
        records: bytes::Bytes,
    ) -> (i16, i64) {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]);
        let response = state.produce(&request);
        let answer = &response.responses[0].partition_responses[0];
        (answer.error_code, answer.base_offset)
    }

    fn fetch(state: &BrokerState, topic: &str, offset: i64) -> (FetchResult, i16, usize) {
        let request = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_min_bytes(1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let result = state.fetch(&request);
        let partition = &result.response.responses[0].partitions[0];
        let (error, len) = (
            partition.error_code,
            partition.records.as_ref().map_or(0, |r| r.len()),
        );
        (result, error, len)
    }

    #[test]
    fn produce_then_fetch_round_trips_through_offsets() {
        let mut state = BrokerState::new("127.0.0.1", 9092, 1 << 20);
        state.create_topic("t", 2).expect("created");
        assert_eq!(produce(&mut state, "t", 0, batch(3, -1, 0, -1)), (0, 0));
        assert_eq!(produce(&mut state, "t", 0, batch(1, -1, 0, -1)), (0, 3));
        let (result, error, len) = fetch(&state, "t", 3);
        assert_eq!(error, 0);
        assert!(result.ready);
        assert_eq!(len, batch(1, -1, 0, -1).len());
        let (result, error, len) = fetch(&state, "t", 4);
        assert_eq!((error, len), (0, 0), "the log end has nothing yet");
        assert!(!result.ready, "an empty fetch may wait for data");
    }

    #[test]
    fn unknown_partitions_and_bad_offsets_answer_with_errors_that_are_sent_at_once() {
        let mut state = BrokerState::new("127.0.0.1", 9092, 1 << 20);
        state.create_topic("t", 1).expect("created");
        assert_eq!(
            produce(&mut state, "u", 0, batch(1, -1, 0, -1)).0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            produce(&mut state, "t", 5, batch(1, -1, 0, -1)).0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            produce(&mut state, "t", 0, bytes::Bytes::from_static(b"junk")).0,
            ResponseError::CorruptMessage.code()
        );
        let (result, error, _) = fetch(&state, "t", 7);
        assert_eq!(error, ResponseError::OffsetOutOfRange.code());
        assert!(result.ready);
        let (_, error, _) = fetch(&state, "nope", 0);
        assert_eq!(error, ResponseError::UnknownTopicOrPartition.code());
    }

    #[test]
    fn topics_are_created_once_with_a_sane_partition_count() {
        let mut state = BrokerState::new("127.0.0.1", 9092, 1 << 20);
        assert_eq!(state.create_topic("t", 1), Ok(()));
        assert_eq!(
            state.create_topic("t", 1),
            Err(ResponseError::TopicAlreadyExists)
        );
        assert_eq!(
            state.create_topic("z", 0),
            Err(ResponseError::InvalidPartitions)
        );
        assert_eq!(
            state.create_topic("z", MAX_PARTITIONS + 1),
            Err(ResponseError::InvalidPartitions)
        );
    }

    #[test]
    fn committed_offsets_are_read_back_per_group_and_absent_ones_are_minus_one() {
        use kafka_protocol::messages::GroupId;
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let mut state = BrokerState::new("127.0.0.1", 9092, 1 << 20);
        state.create_topic("t", 2).expect("created");
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(42),
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(9)
                            .with_committed_offset(1),
                    ]),
            ]);
        let answer = state.offset_commit(&commit);
        let codes: Vec<i16> = answer.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            codes,
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        let read = |group: &'static str| {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0, 1]),
                ]));
            state.offset_fetch(&request).topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(read("g"), vec![-1, 42]);
        assert_eq!(read("other"), vec![-1, -1]);
    }

    #[test]
    fn versions_outside_the_table_are_unsupported() {
        assert!(is_supported(ApiKey::Fetch, 11));
        assert!(!is_supported(ApiKey::Fetch, 12));
        assert!(!is_supported(ApiKey::JoinGroup, 2), "no group membership");
        let advertised = BrokerState::api_versions(0).api_keys;
        assert_eq!(advertised.len(), SUPPORTED_VERSIONS.len());
    }
}
