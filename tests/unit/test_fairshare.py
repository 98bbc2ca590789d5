"""Fair share's decisions (sweep/driver/fairshare.py): who keeps trials first in line, and the slot estimate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlframework.sweep.driver.fairshare import Allowance, Claim, SlotGauge, allowance


def test_a_sweep_alone_keeps_its_backlog_as_ever():
    assert allowance(Claim("a", running=4), [], slots=4) == Allowance(urgent=0, backlog=True)
    done = Claim("b", running=2, wants=False)  # a sweep with nothing left to send claims no slot
    assert allowance(Claim("a", running=2), [done], slots=4).backlog


def test_a_newcomer_asks_for_its_half_and_the_holder_for_nothing():
    holder, newcomer = Claim("a", running=4), Claim("b", running=0)
    assert allowance(newcomer, [holder], slots=4) == Allowance(urgent=2, backlog=False, fair_slots=2.0)
    assert allowance(holder, [newcomer], slots=4) == Allowance(urgent=0, backlog=False, fair_slots=2.0)


def test_share_three_of_four_slots():
    heavy, light = Claim("b", share=3.0, running=1), Claim("a", running=3)
    assert allowance(heavy, [light], slots=4).urgent == 2
    assert allowance(light, [heavy], slots=4).urgent == 0
    assert allowance(Claim("a", running=0), [heavy], slots=4).urgent == 1


def test_a_higher_priority_goes_first_until_it_has_nothing_left():
    urgent = Claim("b", priority=1, running=0)
    assert allowance(Claim("a", running=4), [urgent], slots=4) == Allowance(urgent=0, backlog=False, fair_slots=0.0)
    assert allowance(urgent, [Claim("a", running=4)], slots=4).urgent == 4
    finished = Claim("b", priority=1, running=2, wants=False)
    assert allowance(Claim("a", running=2), [finished], slots=4).backlog


@given(
    shares=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=2, max_size=6),
    slots=st.integers(min_value=1, max_value=64),
)
def test_fair_slots_add_up_to_the_cluster(shares, slots):
    claims = [Claim(str(i), share=share) for i, share in enumerate(shares)]
    fair = [allowance(claim, [c for c in claims if c is not claim], slots).fair_slots for claim in claims]
    assert abs(sum(f for f in fair if f is not None) - slots) < 1e-6


def test_the_gauge_keeps_the_peak_for_its_window():
    gauge = SlotGauge(window=10.0)
    assert gauge.slots == 1
    gauge.observe(4, now=0.0)
    gauge.observe(2, now=5.0)
    assert gauge.slots == 4
    gauge.observe(2, now=12.0)
    assert gauge.slots == 2, "a peak older than the window is forgotten"
