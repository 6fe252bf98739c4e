// Flotilla drives the Apache Kafka Java client for the end-to-end tests in
// test/java_test.go. It uses the client's public API only, with its default
// settings unless a test passes a property. Records cross stdin and stdout
// as tab-separated lines, bytes in base64, so the Go side can check them
// byte for byte.
//
//   produce BOOTSTRAP TOPIC [k=v ...]   stdin: IDX PART TS KEY VALUE [HKEY:HVALUE ...]
//                                       (PART -1: the default partitioner)
//                                       stdout: ack IDX PART OFFSET | fail IDX ERR,
//                                       then "closed" once the producer is closed
//   consume BOOTSTRAP GROUP TOPIC N     subscribe, read N records, commitSync
//   assign BOOTSTRAP TOPIC              assign every partition, read to the ends
//                                       stdout: rec PART OFFSET TS KEY VALUE [HKEY:HVALUE ...]
//   admin BOOTSTRAP                     stdin: one command a line (see admin());
//                                       each answer ends with "ok" or "err CLASS MSG"

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Flotilla {
    static final PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    static final Base64.Encoder b64 = Base64.getEncoder();
    static final Base64.Decoder unb64 = Base64.getDecoder();
    static String bootstrap;

    public static void main(String[] args) throws Exception {
        try {
            switch (args[0]) {
                case "produce": produce(args); break;
                case "consume": consume(args); break;
                case "assign": assign(args); break;
                case "admin": admin(args[1]); break;
                default: throw new IllegalArgumentException("unknown command " + args[0]);
            }
        } finally {
            out.flush();
        }
    }

    static Properties props(String bootstrap, String[] args, int from) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        for (int i = from; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            p.put(kv[0], kv[1]);
        }
        return p;
    }

    static synchronized void println(String s) {
        out.println(s);
        out.flush();
    }

    static void produce(String[] args) throws Exception {
        String topic = args[2];
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (Producer<byte[], byte[]> p = new KafkaProducer<>(props(args[1], args, 3),
                new ByteArraySerializer(), new ByteArraySerializer())) {
            for (String line; (line = in.readLine()) != null; ) {
                String[] f = line.split("\t");
                String idx = f[0];
                int part = Integer.parseInt(f[1]);
                List<Header> hs = new ArrayList<>();
                for (int i = 5; i < f.length; i++) {
                    String[] kv = f[i].split(":", 2);
                    hs.add(new RecordHeader(new String(unb64.decode(kv[0]), StandardCharsets.UTF_8), unb64.decode(kv[1])));
                }
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, part < 0 ? null : part,
                        Long.parseLong(f[2]), unb64.decode(f[3]), unb64.decode(f[4]), hs);
                p.send(r, (md, err) -> {
                    if (err != null) {
                        println("fail\t" + idx + "\t" + err.getClass().getName() + ": " + err.getMessage());
                    } else {
                        println("ack\t" + idx + "\t" + md.partition() + "\t" + md.offset());
                    }
                });
            }
        }
        println("closed");
    }

    static void print(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder sb = new StringBuilder("rec\t").append(r.partition()).append('\t').append(r.offset())
                .append('\t').append(r.timestamp()).append('\t').append(b64.encodeToString(r.key()))
                .append('\t').append(b64.encodeToString(r.value()));
        for (Header h : r.headers()) {
            sb.append('\t').append(b64.encodeToString(h.key().getBytes(StandardCharsets.UTF_8)))
                    .append(':').append(b64.encodeToString(h.value()));
        }
        println(sb.toString());
    }

    static KafkaConsumer<byte[], byte[]> consumer(Properties p) {
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    // consume reads n records as a member of group, then commits what it
    // read and leaves the group; the test bounds it in time.
    static void consume(String[] args) {
        Properties p = props(args[1], args, 5);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[2]);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        int n = Integer.parseInt(args[4]);
        try (KafkaConsumer<byte[], byte[]> c = consumer(p)) {
            c.subscribe(List.of(args[3]));
            int got = 0;
            while (got < n) {
                ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(500));
                Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : rs) {
                    if (got == n) {
                        break;
                    }
                    print(r);
                    got++;
                    commit.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                c.commitSync(commit);
            }
            println("assigned\t" + c.assignment().size());
        }
    }

    // assign reads every partition of topic from its start to its end
    // offset as of the call, outside any group.
    static void assign(String[] args) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(props(args[1], args, 3))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(args[2])) {
                tps.add(new TopicPartition(pi.topic(), pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            Set<TopicPartition> left = new HashSet<>();
            for (TopicPartition tp : tps) {
                if (c.position(tp) < ends.get(tp)) {
                    left.add(tp);
                }
            }
            while (!left.isEmpty()) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    print(r);
                }
                left.removeIf(tp -> c.position(tp) >= ends.get(tp));
            }
        }
    }

    // admin runs one Admin call per line of stdin and prints its result.
    static void admin(String bootstrap) throws Exception {
        Flotilla.bootstrap = bootstrap;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (Admin a = Admin.create(props(bootstrap, new String[0], 0))) {
            for (String line; (line = in.readLine()) != null; ) {
                String[] f = line.split(" ");
                try {
                    adminCall(a, f);
                    println("ok");
                } catch (ExecutionException e) {
                    Throwable c = e.getCause();
                    println("err\t" + c.getClass().getName() + "\t" + c.getMessage());
                } catch (Exception e) {
                    println("err\t" + e.getClass().getName() + "\t" + e.getMessage());
                }
            }
        }
    }

    static void adminCall(Admin a, String[] f) throws Exception {
        switch (f[0]) {
            case "createTopic": { // NAME PARTITIONS [REPLICAS]
                short rf = f.length > 3 ? Short.parseShort(f[3]) : 1;
                a.createTopics(List.of(new NewTopic(f[1], Integer.parseInt(f[2]), rf))).all().get();
                break;
            }
            case "describeCluster": {
                DescribeClusterResult r = a.describeCluster();
                println("cluster\t" + r.clusterId().get() + "\t" + r.controller().get().id());
                for (Node n : r.nodes().get()) {
                    println("node\t" + n.id() + "\t" + n.host() + "\t" + n.port());
                }
                break;
            }
            case "describeTopic": { // NAME
                TopicDescription d = a.describeTopics(List.of(f[1])).allTopicNames().get().get(f[1]);
                for (TopicPartitionInfo p : d.partitions()) {
                    println("partition\t" + p.partition() + "\t" + p.leader().id() + "\t" + p.replicas().size() + "\t" + p.isr().size());
                }
                break;
            }
            case "describeConfigs": { // TOPIC
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, f[1]);
                for (ConfigEntry e : a.describeConfigs(List.of(res)).all().get().get(res).entries()) {
                    println("config\t" + e.name() + "\t" + e.value() + "\t" + e.source() + "\t" + e.type());
                }
                break;
            }
            case "listOffsets": { // TOPIC PARTITION earliest|latest|MILLIS
                OffsetSpec spec = f[3].equals("earliest") ? OffsetSpec.earliest()
                        : f[3].equals("latest") ? OffsetSpec.latest() : OffsetSpec.forTimestamp(Long.parseLong(f[3]));
                TopicPartition tp = new TopicPartition(f[1], Integer.parseInt(f[2]));
                ListOffsetsResult.ListOffsetsResultInfo i = a.listOffsets(Map.of(tp, spec)).partitionResult(tp).get();
                println("offset\t" + i.offset() + "\t" + i.timestamp());
                break;
            }
            case "alterConfig": { // TOPIC SET KEY VALUE | TOPIC DELETE KEY, as kafka-configs --alter does
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, f[1]);
                AlterConfigOp op = f[2].equals("SET")
                        ? new AlterConfigOp(new ConfigEntry(f[3], f[4]), AlterConfigOp.OpType.SET)
                        : new AlterConfigOp(new ConfigEntry(f[3], ""), AlterConfigOp.OpType.DELETE);
                a.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
                break;
            }
            case "createPartitions": { // TOPIC TOTAL
                a.createPartitions(Map.of(f[1], NewPartitions.increaseTo(Integer.parseInt(f[2])))).all().get();
                break;
            }
            case "deleteRecords": { // TOPIC PARTITION BEFORE
                TopicPartition tp = new TopicPartition(f[1], Integer.parseInt(f[2]));
                DeletedRecords d = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(Long.parseLong(f[3]))))
                        .lowWatermarks().get(tp).get();
                println("lowWatermark\t" + d.lowWatermark());
                break;
            }
            case "deleteTopic": { // NAME
                a.deleteTopics(List.of(f[1])).all().get();
                break;
            }
            case "listTopics": {
                for (String t : new TreeSet<>(a.listTopics().names().get())) {
                    println("topic\t" + t);
                }
                break;
            }
            case "listGroups": {
                for (ConsumerGroupListing g : a.listConsumerGroups().all().get()) {
                    println("group\t" + g.groupId() + "\t" + g.state().orElse(null));
                }
                break;
            }
            case "describeGroup": { // GROUP
                ConsumerGroupDescription d = a.describeConsumerGroups(List.of(f[1])).all().get().get(f[1]);
                println("state\t" + d.state() + "\t" + d.partitionAssignor() + "\t" + d.members().size());
                break;
            }
            case "removeMember": { // GROUP INSTANCE: a static member, as kafka-consumer-groups removes one
                a.removeMembersFromConsumerGroup(f[1], new RemoveMembersFromConsumerGroupOptions(
                        List.of(new MemberToRemove(f[2])))).all().get();
                break;
            }
            case "groupOffsets": { // GROUP
                Map<TopicPartition, OffsetAndMetadata> m = a.listConsumerGroupOffsets(f[1]).partitionsToOffsetAndMetadata().get();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
                    println("committed\t" + e.getKey().topic() + "\t" + e.getKey().partition() + "\t" + e.getValue().offset());
                }
                break;
            }
            case "transaction": { // TRANSACTIONAL_ID TOPIC: a transactional producer's first steps
                Properties p = props(bootstrap, new String[0], 0);
                p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, f[1]);
                p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
                try (Producer<byte[], byte[]> pr = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
                    pr.initTransactions();
                    pr.beginTransaction();
                    pr.send(new ProducerRecord<>(f[2], new byte[0])).get();
                    pr.commitTransaction();
                }
                break;
            }
            default:
                throw new IllegalArgumentException("unknown admin command " + f[0]);
        }
    }
}
