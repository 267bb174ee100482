package grey.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Kafka Streams peer of grey's benchmark. Contract (shared with the other peers):
 *
 * <pre>
 *   --broker HOST:PORT --input TOPIC --output TOPIC --workload w1|w2|w3
 *   --guarantee at_least_once|exactly_once --events N --app-id ID --state-dir DIR
 *   [--commit-interval-ms 1000 | --commit-interval 1.0] [--threads 1] [--timeout 600] [--partitions 8]
 * </pre>
 *
 * Prints one JSON result line to stdout; everything else goes to stderr.
 */
public final class KStreamsBench {
    private static final ObjectMapper JSON = new ObjectMapper();

    // -- counting (shared by all stream threads) ----------------------------------------------
    private static final AtomicLong COUNT = new AtomicLong();
    private static final DoubleAdder CHECKSUM = new DoubleAdder();
    private static volatile long firstNanos, lastNanos;
    private static final CountDownLatch ALL_SEEN = new CountDownLatch(1);
    private static final AtomicReference<Throwable> FAILURE = new AtomicReference<>();

    public static void main(String[] argv) throws Exception {
        try {
            run(argv);
        } catch (IllegalArgumentException e) {
            log("usage error: " + e.getMessage());
            System.exit(2);
        }
    }

    private static void run(String[] argv) throws Exception {
        Map<String, String> a = parseArgs(argv);
        String broker = a.getOrDefault("broker", "127.0.0.1:9092"), input = need(a, "input");
        String output = need(a, "output"), workload = need(a, "workload");
        String guarantee = a.getOrDefault("guarantee", "at_least_once");
        long events = Long.parseLong(need(a, "events"));
        String appId = need(a, "app-id"), stateDir = need(a, "state-dir");
        // --commit-interval-ms N, or bench/peers/contract.py's --commit-interval SECONDS
        int commitMs = a.containsKey("commit-interval-ms") ? Integer.parseInt(a.get("commit-interval-ms"))
            : (int) Math.round(Double.parseDouble(a.getOrDefault("commit-interval", "1.0")) * 1000);
        int threads = Integer.parseInt(a.getOrDefault("threads", "1"));
        long timeoutNanos = (long) (Double.parseDouble(a.getOrDefault("timeout", "600")) * 1e9);
        if (!List.of("w1", "w2", "w3").contains(workload)) throw fail("unknown --workload " + workload);
        if (!guarantee.equals("at_least_once") && !guarantee.equals("exactly_once"))
            throw fail("unknown --guarantee " + guarantee);
        // --partitions (contract.py) is accepted; the input topic's real partition count is used instead.
        long deadline = System.nanoTime() + timeoutNanos;

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);          // = consumer group id + internal topic prefix
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, broker);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);            // RocksDB stores live here (w3)
        // exactly_once_v2: one transactional producer per stream thread (KIP-447), the recommended EOS mode.
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
              guarantee.equals("exactly_once") ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        // Commit (ALOS) / transaction (EOS) interval; given explicitly so both guarantees use the same value
        // (Kafka Streams' own default is 30 s for ALOS and 100 ms for EOS).
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);           // single-broker test cluster
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Producer batching: bigger batches than the 16 KB default (records are 0.5-1 KB), a short linger
        // (Kafka Streams' own default is linger.ms=100), and no compression (the pad would compress away).
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 256 * 1024);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 20);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "none");
        // Consumer: Kafka Streams' defaults are already throughput-oriented (max.poll.records=1000,
        // fetch.max.bytes=50 MB); state-store cache stays at its 10 MB default.

        int partitions;
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker))) {
            partitions = admin.describeTopics(List.of(input)).allTopicNames().get().get(input).partitions().size();
            ensureTopic(admin, output, partitions);  // w3 emits closed windows there too
            if (workload.equals("w2")) ensureTopic(admin, output + INVALID_SUFFIX, partitions);
        }

        StreamsBuilder builder = new StreamsBuilder();
        Serde<JsonNode> json = Serdes.serdeFrom(JsonSerde::serialize, JsonSerde::deserialize);
        Consumed<String, JsonNode> consumed = Consumed.with(Serdes.String(), json);
        if (workload.equals("w3")) consumed = consumed.withTimestampExtractor(new EventTime());
        KStream<String, JsonNode> clicks = builder.stream(input, consumed).peek((k, v) -> count(v, events));
        if (workload.equals("w1")) buildW1(clicks, output, json);
        else if (workload.equals("w2")) buildW2(clicks, output, json);
        else buildW3(clicks, output, json);

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            FAILURE.compareAndSet(null, e);
            ALL_SEEN.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            log("state " + before + " -> " + now);
            if (now == KafkaStreams.State.ERROR) {
                FAILURE.compareAndSet(null, new IllegalStateException("streams entered ERROR"));
                ALL_SEEN.countDown();
            }
        });

        int rc = 0;
        String result = null;
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker))) {
            streams.start();
            if (!ALL_SEEN.await(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS))
                throw new IllegalStateException("timeout: processed " + COUNT.get() + " of " + events + " records");
            if (FAILURE.get() != null) throw new IllegalStateException("streams failed", FAILURE.get());
            log("processed " + events + " records; waiting for the final commit");
            waitCommitted(admin, appId, input, partitions, deadline);
            long committedNanos = System.nanoTime();
            if (COUNT.get() != events)
                log("warning: " + COUNT.get() + " records processed (expected " + events + "), re-processing?");
            double processed = (lastNanos - firstNanos) / 1e9, committed = (committedNanos - firstNanos) / 1e9;
            ObjectNode r = JSON.createObjectNode();
            r.put("system", "kafka-streams").put("workload", workload).put("guarantee", guarantee)
             .put("events", events).put("seconds_processed", processed).put("seconds_committed", committed)
             .put("events_per_s", events / committed).put("processed_events_per_s", events / processed)
             .put("checksum", CHECKSUM.sum());
            result = JSON.writeValueAsString(r);
        } catch (Exception e) {
            log("FAILED: " + e);
            if (e.getCause() != null) log("  caused by: " + e.getCause());
            rc = 1;
        } finally {
            if (!streams.close(Duration.ofSeconds(30))) log("warning: streams did not close within 30 s");
        }
        if (result != null) System.out.println(result);
        System.out.flush();
        System.exit(rc);
    }

    /** Counts a record once the topology sees it; the N-th one releases main(). */
    private static void count(JsonNode v, long events) {
        CHECKSUM.add(v.path("amount").asDouble());
        long n = COUNT.incrementAndGet();
        if (n == 1) firstNanos = System.nanoTime();
        if (n == events) {
            lastNanos = System.nanoTime();
            ALL_SEEN.countDown();
        }
    }

    // -- w1: parse, add two fields, write JSON keyed by user_id ------------------------------
    private static void buildW1(KStream<String, JsonNode> clicks, String output, Serde<JsonNode> json) {
        clicks.mapValues(v -> {
            ObjectNode o = (ObjectNode) v;
            o.put("cents", Math.round(o.path("amount").asDouble() * 100));
            o.put("purchase", "purchase".equals(o.path("event_type").asText()));
            return (JsonNode) o;
        }).to(output, Produced.with(Serdes.String(), json));
    }

    // -- w2: validate, profile from an in-process lookup, dead letters as they came ----------
    // The same rules and lookup as bench/peers/contract.py: users u<i> with i % 100 == 99 have no profile.
    private static final String INVALID_SUFFIX = "-invalid";
    private static final Set<String> EVENT_TYPES = Set.of("click", "view", "purchase", "scroll", "hover");
    private static final String[] SEGMENTS = {"new", "casual", "regular", "vip"};
    private static final String[] COUNTRIES = {"de", "fr", "us", "gb", "jp", "br", "in", "ng"};
    private static final Map<String, String[]> PROFILES = new HashMap<>();

    static {
        for (int i = 0; i < 10_000; i++)
            if (i % 100 != 99) PROFILES.put("u" + i, new String[] {SEGMENTS[i % 4], COUNTRIES[i % 8]});
    }

    private static boolean valid(JsonNode v) {
        return PROFILES.containsKey(v.path("user_id").asText()) && v.path("amount").asDouble() >= 0
            && EVENT_TYPES.contains(v.path("event_type").asText()) && v.path("page").asText().startsWith("/");
    }

    private static void buildW2(KStream<String, JsonNode> clicks, String output, Serde<JsonNode> json) {
        Produced<String, JsonNode> produced = Produced.with(Serdes.String(), json);
        clicks.split()
              .branch((k, v) -> valid(v), Branched.withConsumer(ok -> ok.mapValues(v -> {
                  ObjectNode o = (ObjectNode) v;
                  String[] profile = PROFILES.get(o.path("user_id").asText());
                  o.put("segment", profile[0]).put("country", profile[1]);
                  o.put("cents", Math.round(o.path("amount").asDouble() * 100));
                  return (JsonNode) o;
              }).to(output, produced)))
              .defaultBranch(Branched.withConsumer(bad -> bad.to(output + INVALID_SUFFIX, produced)));
    }

    // -- w3: 1-minute tumbling windows (grace 300 s) per [user_id, event_type] ----------------
    // The DSL re-keys through a repartition topic (<app-id>-w3-by-user-type-repartition). To keep that
    // hop cheap, only the two fields the aggregate needs cross it (16 bytes, not the ~0.5-1 KB event).
    // The windowed aggregate lives in the default persistent (RocksDB) window store (fronted by the
    // record cache). Only final results go to the output topic: suppress(untilWindowCloses) holds each
    // window's latest value (in memory, changelogged) until stream time passes window end + grace, then
    // emits one JSON record per window, keyed "user_id|event_type|window_start_ms" (as grey's on_close).
    // EmitStrategy.onWindowClose() gives the same output but measured ~2x slower here (100k events).
    // Note: the bench data spans N/1000 s of event time, so with 100k events no window closes yet.
    private static void buildW3(KStream<String, JsonNode> clicks, String output, Serde<JsonNode> json) {
        Serde<double[]> pair = Serdes.serdeFrom(KStreamsBench::writeDoubles, KStreamsBench::readDoubles);
        clicks.map((k, v) -> KeyValue.pair(k + "|" + v.path("event_type").asText(),
                                           new double[] {v.path("amount").asDouble(), v.path("latency").asDouble()}))
              .groupByKey(Grouped.with("w3-by-user-type", Serdes.String(), pair))
              .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofSeconds(300)))
              // aggregate = [count, sum(amount), sum(latency)]; avg(latency) = sum / count on output
              .aggregate(() -> new double[3],
                         (key, v, agg) -> new double[] {agg[0] + 1, agg[1] + v[0], agg[2] + v[1]},
                         Materialized.<String, double[], WindowStore<Bytes, byte[]>>as("w3-aggregate")
                             .withKeySerde(Serdes.String()).withValueSerde(pair))
              .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("w3-final"))
              .toStream()
              .map((wk, agg) -> {
                  String[] parts = wk.key().split("\\|", 2);
                  ObjectNode o = JSON.createObjectNode();
                  o.put("user_id", parts[0]).put("event_type", parts[1])
                   .put("window_start", wk.window().start()).put("window_end", wk.window().end())
                   .put("count", (long) agg[0]).put("sum_amount", agg[1]).put("avg_latency", agg[2] / agg[0]);
                  return KeyValue.pair(wk.key() + "|" + wk.window().start(), (JsonNode) o);
              })
              .to(output, Produced.with(Serdes.String(), json));
    }

    /** Event time = the click's "timestamp" field (float seconds) in ms. */
    static final class EventTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            JsonNode ts = record.value() instanceof JsonNode v ? v.get("timestamp") : null;
            return ts != null && ts.isNumber() ? (long) (ts.asDouble() * 1000) : record.timestamp();
        }
    }

    /** Minimal JSON serde on Jackson's tree model (ObjectNode), so w1 can add fields in place. */
    static final class JsonSerde {
        static byte[] serialize(String topic, JsonNode v) {
            try {
                return v == null ? null : JSON.writeValueAsBytes(v);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }

        static JsonNode deserialize(String topic, byte[] b) {
            try {
                return b == null ? null : JSON.readTree(b);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }
    }

    private static byte[] writeDoubles(String topic, double[] d) {
        if (d == null) return null;
        ByteBuffer buf = ByteBuffer.allocate(8 * d.length);
        for (double x : d) buf.putDouble(x);
        return buf.array();
    }

    private static double[] readDoubles(String topic, byte[] b) {
        if (b == null) return null;
        ByteBuffer buf = ByteBuffer.wrap(b);
        double[] d = new double[b.length / 8];
        for (int i = 0; i < d.length; i++) d[i] = buf.getDouble();
        return d;
    }

    // -- completion: the group's committed offsets reach the end of the input ---------------

    /**
     * Polls until the app's committed offset on every input partition equals its end offset, and (w3)
     * on every internal repartition partition it has committed too, so the last commit/transaction
     * (and, under ALOS, the producer flush that precedes it) is included in the measured time.
     */
    private static void waitCommitted(Admin admin, String group, String input, int partitions, long deadline)
            throws Exception {
        Map<TopicPartition, OffsetSpec> inputSpec = new HashMap<>();
        for (int i = 0; i < partitions; i++) inputSpec.put(new TopicPartition(input, i), OffsetSpec.latest());
        Map<TopicPartition, Long> inputEnds = ends(admin, inputSpec);
        while (System.nanoTime() < deadline) {
            if (FAILURE.get() != null) throw new IllegalStateException("streams failed", FAILURE.get());
            Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            Map<TopicPartition, Long> targets = new HashMap<>(inputEnds);
            Map<TopicPartition, OffsetSpec> internal = committed.keySet().stream()
                .filter(tp -> !tp.topic().equals(input))
                .collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.latest()));
            if (!internal.isEmpty()) targets.putAll(ends(admin, internal));
            if (targets.entrySet().stream().allMatch(e -> reached(committed.get(e.getKey()), e.getValue()))) return;
            Thread.sleep(20);
        }
        throw new IllegalStateException("timeout waiting for committed offsets to reach the end of " + input);
    }

    private static boolean reached(OffsetAndMetadata committed, long end) {
        return end == 0 || (committed != null && committed.offset() >= end);
    }

    private static Map<TopicPartition, Long> ends(Admin admin, Map<TopicPartition, OffsetSpec> spec)
            throws Exception {
        Map<TopicPartition, Long> out = new HashMap<>();
        admin.listOffsets(spec).all().get().forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    private static void ensureTopic(Admin admin, String topic, int partitions) throws Exception {
        if (admin.listTopics().names().get().contains(topic)) return;
        try {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
            log("created output topic " + topic + " (" + partitions + " partitions)");
        } catch (java.util.concurrent.ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }
    }

    // -- small helpers ------------------------------------------------------------------------
    private static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> a = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw fail("bad argument: " + argv[i]);
            a.put(argv[i].substring(2), argv[++i]);
        }
        return a;
    }

    private static String need(Map<String, String> a, String name) {
        String v = a.get(name);
        if (v == null) throw fail("missing --" + name);
        return v;
    }

    private static IllegalArgumentException fail(String msg) {
        return new IllegalArgumentException(msg);
    }

    private static void log(String msg) {
        System.err.println("[kstreams-bench] " + msg);
    }
}
