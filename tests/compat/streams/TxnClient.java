// Kafka's Java client (4.x) doing transactions, for tests/compat/test_java_transactions.py:
// a transactional producer commits, aborts and commits again, then a read_committed and a
// read_uncommitted consumer read the topic from its beginning.
//
//   java -cp <kafka-clients jars>:<dir of TxnClient.class> TxnClient \
//       BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID RECORDS_PER_TXN
//
// Transactions, in order: "c0" committed, "a1" aborted, "c2" committed, "a3" aborted (the
// producer is closed with it open and a new instance with the same transactional id fences
// and aborts it), "c4" committed by that new instance. Record i of transaction t goes to
// partition i % PARTITIONS with key "t" and value "t-i"; so both committed and aborted
// records interleave on every partition.
//
// stdout, one line each:
//   PROTOCOL <classic|v2>                            the transaction protocol the producer
//                                                    chose (v2, KIP-890, when the cluster
//                                                    finalizes transaction.version 2)
//   TXN <name> <committed|aborted|fenced-open>       as each transaction ends
//   READ <isolation> <partition> <offset> <key> <value>   every record a consumer read
//   END <isolation> <partition> <end offset>        where that consumer stopped
//   DONE
// Exit 0 when every step went through; an exception's stack trace and exit 1 otherwise.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.internals.TransactionManager;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class TxnClient {
    private TxnClient() {}

    private static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static KafkaProducer<String, String> producer(String bootstrap, String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        // Batch the records of a transaction together, but do not wait for more.
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        producer.initTransactions();
        return producer;
    }

    /** The protocol the producer uses: no public API says, its TransactionManager does. */
    private static String protocol(KafkaProducer<String, String> producer) throws Exception {
        java.lang.reflect.Field f = KafkaProducer.class.getDeclaredField("transactionManager");
        f.setAccessible(true);
        TransactionManager tm = (TransactionManager) f.get(producer);
        return tm.isTransactionV2Enabled() ? "v2" : "classic";
    }

    private static void send(KafkaProducer<String, String> producer, String topic,
                             int partitions, String txn, int n) throws Exception {
        producer.beginTransaction();
        for (int i = 0; i < n; i++) {
            final int partition = i % partitions;
            producer.send(new ProducerRecord<>(topic, partition, txn, txn + "-" + i),
                (metadata, error) -> {
                    if (error != null) {
                        say("SENDFAIL " + txn + " " + partition + " " + error);
                    }
                });
        }
        // Every record acknowledged before the transaction ends: an abort then covers
        // records that really are in the log (the read_uncommitted consumer sees them).
        producer.flush();
    }

    private static void read(String bootstrap, String topic, int partitions, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            // Under read_committed the end is the last stable offset: with no transaction
            // open it is the log end, past the last commit marker.
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 30_000;
            while (tps.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException(isolation + " consumer stuck before the end "
                        + ends + "; positions " + tps.stream().map(consumer::position).toList());
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    say("READ " + isolation + " " + r.partition() + " " + r.offset() + " "
                        + r.key() + " " + r.value());
                }
            }
            for (TopicPartition tp : tps) {
                say("END " + isolation + " " + tp.partition() + " " + consumer.position(tp));
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: TxnClient BOOTSTRAP TOPIC PARTITIONS TRANSACTIONAL_ID RECORDS_PER_TXN");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], txnId = args[3];
        int partitions = Integer.parseInt(args[2]), n = Integer.parseInt(args[4]);

        KafkaProducer<String, String> first = producer(bootstrap, txnId);
        send(first, topic, partitions, "c0", n);
        first.commitTransaction();
        say("PROTOCOL " + protocol(first));
        say("TXN c0 committed");
        send(first, topic, partitions, "a1", n);
        first.abortTransaction();
        say("TXN a1 aborted");
        send(first, topic, partitions, "c2", n);
        first.commitTransaction();
        say("TXN c2 committed");
        send(first, topic, partitions, "a3", n);
        // Left open: closing without a timeout does not end the transaction. The next
        // instance's InitProducerId must fence this epoch and abort it.
        first.close(Duration.ZERO);
        say("TXN a3 fenced-open");

        try (KafkaProducer<String, String> second = producer(bootstrap, txnId)) {
            send(second, topic, partitions, "c4", n);
            second.commitTransaction();
            say("TXN c4 committed");
        }

        read(bootstrap, topic, partitions, "read_committed");
        read(bootstrap, topic, partitions, "read_uncommitted");
        say("DONE");
    }
}
