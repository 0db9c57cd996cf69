import pytest

from dyffusion.method.schedule import StepSchedule, parse_steps, sampling_steps


def test_before_t1_only_times_match_the_spec():
    schedule = StepSchedule(horizon=5, kind="before_t1_only", extra_steps=3)
    assert schedule.num_steps == 8
    assert schedule.times.tolist() == [0, 0.25, 0.5, 0.75, 1, 2, 3, 4]
    assert schedule.dynamical_steps == [0, 4, 5, 6, 7]
    assert schedule.artificial_steps == [1, 2, 3]


def test_before_t1_only_without_extra_steps_is_the_integers():
    schedule = StepSchedule(horizon=4)
    assert schedule.num_steps == 4
    assert schedule.times.tolist() == [0, 1, 2, 3]


def test_linear_schedule_times_match_the_spec():
    schedule = StepSchedule(horizon=3, kind="linear", extra_steps=1)
    assert schedule.num_steps == 3 + 1 * 2
    assert schedule.times.tolist() == [0, 0.5, 1, 1.5, 2]
    assert schedule.last_step == 4 and schedule.time_of_step(4) == 2


def test_fractional_steps_interpolate_times():
    schedule = StepSchedule(horizon=5, extra_steps=3)
    assert schedule.time_of(0.5) == pytest.approx(0.125)
    assert schedule.time_of(4.5) == pytest.approx(1.5)
    assert schedule.time_of(7) == 4


def test_sampling_step_subsets():
    schedule = StepSchedule(horizon=4, extra_steps=6)  # artificial steps 1..6, dynamical 0, 7, 8, 9
    assert sampling_steps(schedule, "all") == list(range(10))
    assert sampling_steps(schedule, "dynamical") == [0, 7, 8, 9]
    assert sampling_steps(schedule, "every:2") == [0, 2, 4, 6, 7, 8, 9]
    assert sampling_steps(schedule, "first:2") == [0, 1, 2, 7, 8, 9]
    assert sampling_steps(schedule, [3.5, 8]) == [0, 3.5, 8, 9]
    assert parse_steps("0,0.5,9") == [0.0, 0.5, 9.0] and parse_steps("every:3") == "every:3"


@pytest.mark.parametrize("bad", ["often", "every:0", "every:x", [12]])
def test_bad_sampling_steps_are_refused(bad):
    with pytest.raises(ValueError):
        sampling_steps(StepSchedule(horizon=4, extra_steps=2), bad)


@pytest.mark.parametrize("kwargs", [dict(horizon=1), dict(horizon=4, kind="cosine"), dict(horizon=4, extra_steps=-1)])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        StepSchedule(**kwargs)
