"""The emulator's scale-to-zero clock, on a clock the test moves: copies come and go with time, not with looks."""

from __future__ import annotations

from sagemaker_emulator.capacity import NO_CAPACITY_MESSAGE, Capacity


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scaled_to_zero(clock: Clock, warm_up: float = 1.0, idle: float | None = 2.0) -> Capacity:
    return Capacity("component", copies=0, warm_up_seconds=warm_up, idle_seconds=idle, clock=clock)


def copies_at(capacity: Capacity, clock: Clock, moment: float) -> int:
    clock.now = moment
    return int(capacity.state()["copies"])


def test_a_refusal_starts_the_warm_up_and_the_copy_serves_once_it_is_over() -> None:
    clock = Clock()
    capacity = scaled_to_zero(clock)
    assert capacity.admit("component", "1").message == NO_CAPACITY_MESSAGE
    assert capacity.state()["ready_in_seconds"] == 1.0
    clock.now = 0.5
    assert not capacity.admit("component", "1").admitted  # still warming up; the wait is not restarted
    assert capacity.state()["ready_in_seconds"] == 0.5
    clock.now = 1.0
    assert capacity.admit("component", "1").admitted


def test_an_idle_copy_goes_at_the_same_time_whether_or_not_anyone_looks() -> None:
    for looks in ([], [1.5], [1.5, 2.9], [2.5]):
        clock = Clock()
        capacity = scaled_to_zero(clock)
        capacity.admit("component", "1")  # refused at 0: the copy comes at 1, idle from then, gone after 3
        for moment in looks:
            copies_at(capacity, clock, moment)
        assert copies_at(capacity, clock, 2.9) == 1, looks
        assert copies_at(capacity, clock, 3.1) == 0, looks


def test_admission_alone_applies_the_idle_time() -> None:
    clock = Clock()
    capacity = Capacity("component", copies=1, warm_up_seconds=1.0, idle_seconds=2.0, clock=clock)
    clock.now = 1.9
    assert capacity.admit("component", "1").admitted  # the idle time counts again from here
    clock.now = 3.8
    assert capacity.admit("component", "1").admitted
    clock.now = 5.9
    assert not capacity.admit("component", "1").admitted


def test_without_the_component_s_name_nothing_is_admitted() -> None:
    capacity = scaled_to_zero(Clock())
    assert not capacity.admit(None, "1").admitted
    assert "not found" in capacity.admit("other", "1").message
