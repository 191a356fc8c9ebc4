"""The replication rules of one partition (broker/replica_state.py), without processes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.broker.replica_state import AckState, Assignment, FetchClock, ReplicaState

ME = 1


def leader(isr: tuple[int, ...] = (1, 2, 3), min_isr: int = 2, epoch: int = 5,
           now: float = 0.0) -> ReplicaState:
    s = ReplicaState(ME, min_isr=min_isr)
    s.assign(Assignment(ME, epoch, 10, (1, 2, 3), isr), now)
    return s


def test_high_watermark_is_the_smallest_log_end_over_the_isr() -> None:
    s = leader()
    assert s.high_watermark(100) == 0  # followers have not fetched in this epoch
    s.follower_fetched(2, 80, now=1, log_end=100)
    s.follower_fetched(3, 60, now=1, log_end=100)
    assert s.high_watermark(100) == 60
    s.follower_fetched(3, 100, now=2, log_end=100)
    assert s.high_watermark(100) == 80


def test_high_watermark_ignores_replicas_outside_the_isr() -> None:
    s = leader(isr=(1, 2))
    s.follower_fetched(2, 90, now=1, log_end=100)
    s.follower_fetched(3, 5, now=1, log_end=100)
    assert s.high_watermark(100) == 90


def test_high_watermark_stops_below_min_isr() -> None:
    s = leader(isr=(1,), min_isr=2)
    assert s.high_watermark(100) is None
    assert not s.may_append_acks_all()
    single = leader(isr=(1,), min_isr=1)
    assert single.high_watermark(100) == 100 and single.may_append_acks_all()


def test_a_follower_is_never_a_leader_for_the_high_watermark() -> None:
    s = ReplicaState(ME, min_isr=1)
    change = s.assign(Assignment(2, 5, 10, (1, 2, 3), (1, 2, 3)), 0)
    assert not change.became_leader and s.high_watermark(100) is None
    assert s.follower_high_watermark(70, 50) == 50
    assert s.follower_high_watermark(40, 50) == 40


def test_acks_all_states() -> None:
    s = leader()
    assert s.ack_state(target=10, high_watermark=10) is AckState.DONE
    assert s.ack_state(target=11, high_watermark=10) is AckState.WAITING
    s.assign(Assignment(ME, 5, 11, (1, 2, 3), (1,)), now=1)  # ISR shrank below min ISR
    assert s.ack_state(target=11, high_watermark=10) is AckState.NOT_ENOUGH_REPLICAS
    s.assign(Assignment(2, 6, 12, (1, 2, 3), (2, 3)), now=2)  # leadership moved
    assert s.ack_state(target=11, high_watermark=10) is AckState.NOT_LEADER


def test_new_leadership_resets_follower_progress_and_lag() -> None:
    s = leader(now=0)
    s.follower_fetched(2, 100, now=1, log_end=100)
    change = s.assign(Assignment(ME, 6, 11, (1, 2, 3), (1, 2, 3)), now=50)
    assert change.new_leader_epoch and not change.became_leader
    # Nothing reported to the old epoch counts; every follower gets a fresh allowance.
    assert s.high_watermark(100) == 0
    assert s.isr_without_laggards(now=59, max_lag_s=10, log_end=100) is None


def test_follower_catches_up_into_the_isr() -> None:
    s = leader(isr=(1, 2))
    s.follower_fetched(3, 40, now=1, log_end=100)
    assert s.isr_to_add(3, high_watermark=50, epoch_start=0, live=True) is None
    s.follower_fetched(3, 50, now=2, log_end=100)
    assert s.isr_to_add(3, high_watermark=50, epoch_start=0, live=True) == (1, 2, 3)
    # ...but not before it reached the current leader epoch, nor while fenced.
    assert s.isr_to_add(3, high_watermark=50, epoch_start=60, live=True) is None
    assert s.isr_to_add(3, high_watermark=50, epoch_start=0, live=False) is None
    assert s.isr_to_add(2, high_watermark=50, epoch_start=0, live=True) is None  # already in


def test_lagging_follower_leaves_the_isr() -> None:
    s = leader(now=0)
    s.follower_fetched(2, 100, now=5, log_end=100)
    s.follower_fetched(3, 90, now=5, log_end=100)
    assert s.isr_without_laggards(now=9, max_lag_s=10, log_end=100) is None
    assert s.isr_without_laggards(now=11, max_lag_s=10, log_end=100) == (1, 2)
    # A follower that is behind but caught up recently stays; one that did not, goes.
    s.follower_fetched(3, 100, now=11, log_end=100)
    s.follower_fetched(3, 100, now=11, log_end=120)
    assert s.isr_without_laggards(now=20, max_lag_s=10, log_end=120) == (1, 3)


def test_the_leader_never_removes_itself() -> None:
    s = leader(isr=(1,), min_isr=1)
    assert s.isr_without_laggards(now=1000, max_lag_s=1, log_end=100) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([2, 3]), st.integers(0, 200)), max_size=30),
       st.integers(0, 200), st.sets(st.sampled_from([2, 3])))
def test_high_watermark_never_exceeds_what_the_isr_holds(
        fetches: list[tuple[int, int]], log_end: int, others: set[int]) -> None:
    """Property: the high watermark is at most each ISR member's log end, and None below
    min ISR; so an acknowledged acks=all write is on every ISR replica."""
    isr = tuple(sorted({ME, *others}))
    s = leader(isr=isr, min_isr=2)
    held = {2: -1, 3: -1}
    for replica, offset in fetches:
        offset = min(offset, log_end)
        s.follower_fetched(replica, offset, now=1, log_end=log_end)
        held[replica] = offset
    hw = s.high_watermark(log_end)
    if len(isr) < 2:
        assert hw is None
    else:
        assert hw is not None and hw <= log_end
        assert all(hw <= max(held[r], 0) for r in isr if r != ME)


def test_isr_changes_of_a_kept_leadership_say_shrink_or_expand() -> None:
    # odradek_isr_changes_total counts these: the ISR a leader sees before and after the
    # metadata applies a change, whoever asked for it (issue 17: an expand applied before
    # the leader's AlterPartition answer came back was counted as a shrink).
    s = leader(isr=(3, 2))
    grown = s.assign(Assignment(ME, 5, 11, (1, 2, 3), (1, 2, 3)), 1.0)
    assert grown.isr_expanded and not grown.isr_shrunk
    shrunk = s.assign(Assignment(ME, 5, 12, (1, 2, 3), (1, 2)), 2.0)
    assert shrunk.isr_shrunk and not shrunk.isr_expanded
    same = s.assign(Assignment(ME, 5, 12, (1, 2, 3), (2, 1)), 3.0)
    assert not same.isr_shrunk and not same.isr_expanded


def test_a_new_leadership_is_not_an_isr_change() -> None:
    s = ReplicaState(ME)
    s.assign(Assignment(2, 5, 10, (1, 2, 3), (1, 2, 3)), 0.0)
    took_over = s.assign(Assignment(ME, 6, 11, (1, 2, 3), (1, 3)), 1.0)
    assert took_over.became_leader
    assert not took_over.isr_shrunk and not took_over.isr_expanded


def test_a_pending_addition_holds_the_high_watermark() -> None:
    """Kafka's maximal ISR: once the leader asks to add a replica, the controller may commit
    it (and elect that replica leader) before this leader applies the change, so nothing the
    added replica lacks may be acknowledged meanwhile. Found by `odradek verify`: an acked
    record was truncated after a preferred-leader election moved leadership to a replica
    that had just rejoined the ISR."""
    s = leader(isr=(1, 2))
    s.follower_fetched(2, 100, now=1, log_end=100)
    s.follower_fetched(3, 90, now=1, log_end=100)  # caught up to the HW of 90
    assert s.high_watermark(100) == 100  # the ISR is {1, 2}
    s.propose_isr((1, 2, 3))
    assert s.maximal_isr == (1, 2, 3)
    assert s.high_watermark(100) == 90  # waits for 3 as well
    # The controller applied it: the ISR holds 3, nothing is pending any more.
    s.assign(Assignment(ME, 5, 11, (1, 2, 3), (1, 2, 3)), now=2)
    assert s.pending_isr is None and s.high_watermark(100) == 90
    s.follower_fetched(3, 100, now=3, log_end=100)
    assert s.high_watermark(100) == 100


def test_a_refused_or_abandoned_addition_stops_holding_the_high_watermark() -> None:
    s = leader(isr=(1, 2))
    s.follower_fetched(2, 100, now=1, log_end=100)
    s.follower_fetched(3, 90, now=1, log_end=100)
    s.propose_isr((1, 2, 3))
    s.proposal_refused((1, 2, 4))  # not what is pending: no change
    assert s.high_watermark(100) == 90
    s.proposal_refused((1, 2, 3))
    assert s.pending_isr is None and s.high_watermark(100) == 100
    # Unknown fate (no answer), and the replica stops fetching: given up after the lag time.
    s.propose_isr((1, 2, 3))
    assert not s.drop_lagging_addition(now=5, max_lag_s=10, log_end=100)
    assert s.drop_lagging_addition(now=12, max_lag_s=10, log_end=100)
    assert s.high_watermark(100) == 100


def test_a_pending_removal_keeps_the_replica_until_applied() -> None:
    s = leader()
    s.follower_fetched(2, 100, now=1, log_end=100)
    s.follower_fetched(3, 50, now=1, log_end=100)
    s.propose_isr((1, 2))
    assert s.maximal_isr == (1, 2, 3) and s.high_watermark(100) == 50
    s.assign(Assignment(ME, 5, 11, (1, 2, 3), (1, 2)), now=2)
    assert s.high_watermark(100) == 100


def test_a_held_follower_was_caught_up_at_its_sessions_latest_request() -> None:
    # A fetch session that no longer reads an unchanged partition lets the session's clock
    # stand for the follower's fetches at the log end, until the log end moves.
    s = leader(isr=(1, 2), now=0)
    clock = FetchClock(1)
    assert not s.hold_follower(2, 100, clock)  # never fetched: not caught up
    s.follower_fetched(2, 100, now=1, log_end=100)
    assert s.hold_follower(2, 100, clock)
    clock.at = 20  # the session's requests go on without naming the partition
    s.log_end_moved(110)  # an append: the follower was last caught up at 20
    assert s.followers[2].held is None and s.followers[2].caught_up_at == 20
    assert s.isr_without_laggards(now=29, max_lag_s=10, log_end=110) is None
    assert s.isr_without_laggards(now=31, max_lag_s=10, log_end=110) == (1,)
    clock.at = 40  # a later request does not count once the hold ended
    s.log_end_moved(120)
    assert s.followers[2].caught_up_at == 20


def test_a_follower_is_held_only_in_the_isr_and_at_the_log_end() -> None:
    s = leader(isr=(1, 2), now=0)
    s.follower_fetched(2, 90, now=1, log_end=100)
    assert not s.hold_follower(2, 100, FetchClock(1))  # behind
    s.follower_fetched(3, 100, now=1, log_end=100)
    assert not s.hold_follower(3, 100, FetchClock(1))  # not in the ISR: the full path
    # A read of the partition ends a hold (its position is known again).
    s.follower_fetched(2, 100, now=2, log_end=100)
    clock = FetchClock(5)
    assert s.hold_follower(2, 100, clock)
    s.follower_fetched(2, 100, now=6, log_end=100)
    assert s.followers[2].held is None
    clock.at = 50
    s.log_end_moved(110)
    assert s.followers[2].caught_up_at == 6


def test_unfetched_followers_are_the_isr_members_not_heard_from_this_leadership() -> None:
    s = leader(isr=(1, 2))
    assert s.unfetched_followers() == [2]  # 3 is out of the ISR: no write waits for it
    s.follower_fetched(2, 0, now=1, log_end=0)
    assert s.unfetched_followers() == []
    s.propose_isr((1, 2, 3))  # a pending addition: writes wait for 3 too
    assert s.unfetched_followers() == [3]
    s.assign(Assignment(ME, 6, 11, (1, 2, 3), (1, 2, 3)), now=2)  # a new leadership
    assert s.unfetched_followers() == [2, 3]
