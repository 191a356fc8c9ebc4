// A small stateful Kafka Streams application for tests/compat/test_streams.py: per key, the
// count and the sum of the numbers in an input topic, kept in a persistent (RocksDB) store
// backed by a changelog topic, with every update of the table written to an output topic.
//
//   java -cp <kafka-streams jars>:<dir of SumApp.class> SumApp \
//       BOOTSTRAP APPLICATION_ID INPUT_TOPIC OUTPUT_TOPIC STATE_DIR [GUARANTEE]
//
// GUARANTEE is Streams' processing.guarantee: at_least_once (the default) or exactly_once_v2
// (the store's changelog, the output and the input offsets committed in one transaction).
//
// Input records: key = any string, value = a decimal integer. Keys are lower-cased before
// grouping, which re-keys the stream, so Streams routes it through an internal repartition
// topic (created with CreateTopics, purged with DeleteRecords) before the aggregation.
// Output records: key = the lower-cased key, value = "<count>,<sum>" over all its inputs.
//
// It prints one line per event the test waits for, on stdout:
//   STATE <new state>                                  every KafkaStreams state change
//   RESTORED <store> <topic> <partition> <records>     a store partition restored from its changelog
//   CLOSED                                             after a clean close
// and runs until stdin reaches EOF or it gets SIGTERM; either closes Streams cleanly (offsets
// committed, store flushed), then it exits 0.

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

public final class SumApp {
    public static final String STORE = "sums";

    private SumApp() {}

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5 && args.length != 6) {
            System.err.println("usage: SumApp BOOTSTRAP APPLICATION_ID INPUT_TOPIC OUTPUT_TOPIC STATE_DIR [GUARANTEE]");
            System.exit(2);
        }
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3];
        String stateDir = args[4];
        String guarantee = args.length == 6 ? args[5] : StreamsConfig.AT_LEAST_ONCE;

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        // Commit (offsets, store flush, changelog; under exactly_once_v2 the transaction)
        // often: the test waits on the output, which a read_committed reader only sees
        // committed.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        // Purge the repartition topic (DeleteRecords up to the committed offsets) at every
        // commit rather than every 30 s, so a short run does it too.
        props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 200);
        // No record cache: every update reaches the changelog and the output topic.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // A broker of the test's cluster is killed: don't let one request wait for long.
        props.put(StreamsConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6_000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1_000);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .groupBy((key, value) -> key.toLowerCase(), Grouped.with("by-key", Serdes.String(), Serdes.String()))
            .aggregate(
                () -> "0,0",
                (key, value, agg) -> {
                    String[] cs = agg.split(",");
                    long count = Long.parseLong(cs[0]) + 1;
                    long sum = Long.parseLong(cs[1]) + Long.parseLong(value.trim());
                    return count + "," + sum;
                },
                Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as(STORE)
                    .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
            .toStream()
            .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setStateListener((now, before) -> say("STATE " + now));
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                say("RESTORED " + store + " " + tp.topic() + " " + tp.partition() + " " + total);
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });

        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean closing = new AtomicBoolean(false);
        AtomicBoolean sigterm = new AtomicBoolean(false);
        Runnable close = () -> {
            if (closing.compareAndSet(false, true)) {
                boolean done = streams.close(Duration.ofSeconds(30));
                say(done ? "CLOSED" : "CLOSE TIMED OUT");
                stopped.countDown();
            }
        };
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            sigterm.set(true);
            close.run();
        }, "sigterm"));
        Thread stdin = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // Anything written is ignored: only EOF means stop.
                }
            } catch (java.io.IOException e) {
                // A broken stdin means the parent is gone: stop as well.
            }
            close.run();
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();

        streams.start();
        stopped.await();
        // On SIGTERM the JVM is already exiting (System.exit would block): just return.
        if (!sigterm.get()) {
            System.exit(streams.state() == KafkaStreams.State.NOT_RUNNING ? 0 : 1);
        }
    }
}
