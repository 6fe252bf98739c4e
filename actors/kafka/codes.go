package kafka

// Kafka error codes this package answers with itself. The handler's codes are
// its own business.
const (
	codeNone                    int16 = 0
	codeUnknownTopicOrPartition int16 = 3
	codeLeaderNotAvailable      int16 = 5
	codeUnsupportedVersion      int16 = 35
	codeInvalidRequest          int16 = 42
	codeUnknownTopicID          int16 = 100
	codeUnsupportedEndpointType int16 = 115
)

// API keys this package serves itself.
const (
	keyMetadata        int16 = 3
	keyControlledShut  int16 = 7
	keyApiVersions     int16 = 18
	keyDescribeCluster int16 = 60
)

// ACL operations (Kafka's AclOperation codes), for the authorized-operations
// bit fields. Flotilla has no authorizer, so, like Kafka without one, every
// operation a resource supports is reported as authorized.
const (
	aclRead            = 3
	aclWrite           = 4
	aclCreate          = 5
	aclDelete          = 6
	aclAlter           = 7
	aclDescribe        = 8
	aclClusterAction   = 9
	aclDescribeConfigs = 10
	aclAlterConfigs    = 11
	aclIdempotentWrite = 12
	aclCreateTokens    = 13
	aclDescribeTokens  = 14
)

// The authorized-operations bit fields of a topic and of the cluster.
const (
	topicAuthorizedOps int32 = 1<<aclRead | 1<<aclWrite | 1<<aclCreate | 1<<aclDelete |
		1<<aclAlter | 1<<aclDescribe | 1<<aclDescribeConfigs | 1<<aclAlterConfigs
	clusterAuthorizedOps int32 = 1<<aclCreate | 1<<aclAlter | 1<<aclDescribe | 1<<aclClusterAction |
		1<<aclDescribeConfigs | 1<<aclAlterConfigs | 1<<aclIdempotentWrite |
		1<<aclCreateTokens | 1<<aclDescribeTokens
)
