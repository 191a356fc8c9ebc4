import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * One member of a consumer group on the KIP-848 protocol (group.protocol=consumer), for
 * tests/compat/test_java_consumer_group.py. Args: bootstrap topic group outPath, where
 * topic "regex:R" subscribes to the broker-side regex R (SubscriptionPattern). Writes
 * what it reads to outPath ("partition offset value" lines), then commits it
 * synchronously (outPath.commits); its assignment changes to outPath.events and its
 * assignment to outPath.assigned. Leaves the group cleanly once outPath.stop exists.
 */
public class GroupMember {
    public static void main(String[] args) throws IOException {
        String bootstrap = args[0], topic = args[1], group = args[2], out = args[3];
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("group.protocol", "consumer");
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        try (PrintWriter events = new PrintWriter(new FileWriter(out + ".events", true), true);
             PrintWriter read = new PrintWriter(new FileWriter(out, true), true);
             PrintWriter commits = new PrintWriter(new FileWriter(out + ".commits", true), true);
             KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    events.println("assign " + names(ps));
                }
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    events.println("revoke " + names(ps));
                }
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    events.println("lost " + names(ps));
                }
            };
            if (topic.startsWith("regex:")) {
                consumer.subscribe(new SubscriptionPattern(topic.substring(6)), listener);
            } else {
                consumer.subscribe(List.of(topic), listener);
            }
            while (!Files.exists(Path.of(out + ".stop"))) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    read.println(r.partition() + " " + r.offset() + " " + r.value());
                    try {
                        consumer.commitSync(Map.of(new TopicPartition(r.topic(), r.partition()),
                                                   new OffsetAndMetadata(r.offset() + 1)));
                        commits.println(r.partition() + " " + r.offset());
                    } catch (KafkaException e) {
                        // The partition moved meanwhile; its new owner reads from the commit.
                        System.err.println("commit failed: " + e);
                    }
                }
                Path tmp = Path.of(out + ".assigned.tmp");
                Files.writeString(tmp, names(consumer.assignment()));
                Files.move(tmp, Path.of(out + ".assigned"), StandardCopyOption.REPLACE_EXISTING,
                           StandardCopyOption.ATOMIC_MOVE);
            }
        }
        try (PrintWriter events = new PrintWriter(new FileWriter(out + ".events", true), true)) {
            events.println("closed");
        }
    }

    static String names(Collection<TopicPartition> ps) {
        return ps.stream().map(tp -> Integer.toString(tp.partition())).sorted()
            .collect(Collectors.joining(" "));
    }
}
