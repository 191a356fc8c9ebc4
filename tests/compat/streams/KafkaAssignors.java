import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.coordinator.group.api.assignor.ConsumerGroupPartitionAssignor;
import org.apache.kafka.coordinator.group.api.assignor.GroupAssignment;
import org.apache.kafka.coordinator.group.api.assignor.GroupSpec;
import org.apache.kafka.coordinator.group.api.assignor.MemberAssignment;
import org.apache.kafka.coordinator.group.api.assignor.MemberSubscription;
import org.apache.kafka.coordinator.group.api.assignor.SubscribedTopicDescriber;
import org.apache.kafka.coordinator.group.api.assignor.SubscriptionType;
import org.apache.kafka.coordinator.group.assignor.RangeAssignor;
import org.apache.kafka.coordinator.group.assignor.UniformAssignor;

/**
 * Kafka 4.1's server-side assignors (uniform, range) on cases read from stdin, one per line,
 * for tests/compat/test_kafka_assignors.py:
 *
 *   assignor;T:PARTITIONS,...;MEMBER=T+T/T:P+P/T:P|MEMBER=...
 *
 * where T is a topic number (its id is the Uuid 0-T, so Kafka's hash order of topic ids is
 * their numeric order) and each member lists its subscribed topics, then its current
 * assignment. Members are given to the assignor in the order written. Prints, per case,
 * MEMBER=T:P+P/T:P|... for every member, members and topics in order.
 */
public class KafkaAssignors {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split(";", -1);
            ConsumerGroupPartitionAssignor assignor =
                f[0].equals("range") ? new RangeAssignor() : new UniformAssignor();
            Map<Uuid, Integer> counts = new HashMap<>();
            for (String t : f[1].split(",")) {
                String[] kv = t.split(":");
                counts.put(topic(kv[0]), Integer.parseInt(kv[1]));
            }
            LinkedHashMap<String, Set<Uuid>> subscriptions = new LinkedHashMap<>();
            Map<String, Map<Uuid, Set<Integer>>> current = new HashMap<>();
            Set<List<Long>> assigned = new HashSet<>();
            for (String m : f[2].split("\\|")) {
                String[] mv = m.split("=", 2);
                String[] parts = mv[1].split("/");
                Set<Uuid> subscribed = new HashSet<>();
                for (String t : parts[0].split("\\+")) subscribed.add(topic(t));
                subscriptions.put(mv[0], subscribed);
                Map<Uuid, Set<Integer>> owned = new HashMap<>();
                for (int i = 1; i < parts.length; i++) {
                    String[] tp = parts[i].split(":");
                    Set<Integer> ps = new HashSet<>();
                    for (String p : tp[1].split("\\+")) {
                        ps.add(Integer.parseInt(p));
                        assigned.add(List.of(Long.parseLong(tp[0]), Long.parseLong(p)));
                    }
                    owned.put(topic(tp[0]), Collections.unmodifiableSet(ps));
                }
                current.put(mv[0], Collections.unmodifiableMap(owned));
            }
            boolean homogeneous = new HashSet<>(subscriptions.values()).size() <= 1;
            GroupSpec spec = new GroupSpec() {
                public Collection<String> memberIds() { return subscriptions.keySet(); }
                public SubscriptionType subscriptionType() {
                    return homogeneous ? SubscriptionType.HOMOGENEOUS : SubscriptionType.HETEROGENEOUS;
                }
                public boolean isPartitionAssigned(Uuid t, int p) {
                    return assigned.contains(List.of(t.getLeastSignificantBits(), (long) p));
                }
                public boolean isPartitionAssignable(Uuid t, int p) { return true; }
                public MemberSubscription memberSubscription(String m) {
                    return new MemberSubscription() {
                        public Optional<String> rackId() { return Optional.empty(); }
                        public Optional<String> instanceId() { return Optional.empty(); }
                        public Set<Uuid> subscribedTopicIds() { return subscriptions.get(m); }
                    };
                }
                public MemberAssignment memberAssignment(String m) {
                    Map<Uuid, Set<Integer>> owned = current.get(m);
                    return () -> owned;
                }
            };
            SubscribedTopicDescriber topics = new SubscribedTopicDescriber() {
                public int numPartitions(Uuid t) { return counts.getOrDefault(t, -1); }
                public Set<String> racksForPartition(Uuid t, int p) { return Set.of(); }
            };
            GroupAssignment out = assignor.assign(spec, topics);
            StringBuilder sb = new StringBuilder();
            for (String m : subscriptions.keySet()) {
                TreeMap<Long, TreeSet<Integer>> byTopic = new TreeMap<>();
                MemberAssignment a = out.members().get(m);
                if (a != null) {
                    a.partitions().forEach((t, ps) -> {
                        if (!ps.isEmpty()) byTopic.put(t.getLeastSignificantBits(), new TreeSet<>(ps));
                    });
                }
                List<String> parts = new ArrayList<>();
                byTopic.forEach((t, ps) -> parts.add(t + ":" + String.join("+",
                    ps.stream().map(String::valueOf).toList())));
                sb.append(m).append("=").append(String.join("/", parts)).append("|");
            }
            System.out.println(sb);
        }
    }

    static Uuid topic(String number) {
        return new Uuid(0, Long.parseLong(number));
    }
}
