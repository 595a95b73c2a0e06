"""UnfreezeSchedule: pure functions of the epoch/step, serializable, with clear errors."""

import json

import keras
import pytest

from tlkit.unfreeze import GradualUnfreeze, TableUnfreeze, UnfreezeSchedule
from tlkit.unfreeze import get as get_schedule


def test_gradual_ulmfit():
    s = UnfreezeSchedule.gradual(head_epochs=2, first=2, every=1, per_step=1)
    assert [s.num_unfrozen(e, 5) for e in range(8)] == [0, 0, 2, 3, 4, 5, 5, 5]
    slow = UnfreezeSchedule.gradual(head_epochs=1, first=1, every=2, per_step=2)
    assert [slow.num_unfrozen(e, 6) for e in range(8)] == [0, 1, 1, 3, 3, 5, 5, 6]
    assert s.unit == "epoch"


def test_table_and_by_step():
    s = UnfreezeSchedule.table({0: 0, 3: 2, 5: "all"})
    assert [s.num_unfrozen(e, 4) for e in range(7)] == [0, 0, 0, 2, 2, 4, 4]
    assert UnfreezeSchedule.table({2: 1}).num_unfrozen(0, 3) == 0  # missing 0 means head only
    assert UnfreezeSchedule.table({0: -1}).num_unfrozen(0, 3) == 3  # negative means all
    assert UnfreezeSchedule.table({0: 9}).num_unfrozen(0, 3) == 3  # capped
    steps = UnfreezeSchedule.by_step({0: 0, 100: 1, 250: "all"})
    assert steps.unit == "step"
    assert [steps.num_unfrozen(t, 3) for t in (0, 99, 100, 249, 250)] == [0, 0, 1, 1, 3]
    assert UnfreezeSchedule.constant("all").num_unfrozen(0, 7) == 7


def test_pure_function_and_helpers():
    s = UnfreezeSchedule.gradual(head_epochs=1, first=1)
    # Same answer whatever was asked before (no hidden state), so resume is consistent.
    assert [s.num_unfrozen(e, 3) for e in (3, 0, 2, 1)] == [3, 0, 2, 1]
    assert s.change_points(6, 3) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    names = ["block1", "block2", "block3", "head"]
    assert s.trainable_groups(0, names) == ["head"]
    assert s.trainable_groups(2, names) == ["block2", "block3", "head"]
    assert s.trainable_groups(9, names) == names


@pytest.mark.parametrize(
    "schedule",
    [
        UnfreezeSchedule.gradual(head_epochs=2, first=2, every=3, per_step=2),
        UnfreezeSchedule.table({0: 0, 3: 2, 5: "all"}),
        UnfreezeSchedule.by_step({0: 1, 10: "all"}),
    ],
)
def test_serialization_round_trip(schedule):
    config = schedule.get_config()
    assert type(schedule).from_config(json.loads(json.dumps(config))) == schedule
    serialized = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is type(schedule) and restored == schedule
    assert get_schedule(serialized) == schedule
    assert [restored.num_unfrozen(t, 4) for t in range(12)] == [
        schedule.num_unfrozen(t, 4) for t in range(12)
    ]


def test_get_accepts_tables_and_ints():
    assert isinstance(get_schedule({0: 0, 2: 1}), TableUnfreeze)
    assert get_schedule(2).num_unfrozen(0, 5) == 2
    assert isinstance(get_schedule(UnfreezeSchedule.gradual()), GradualUnfreeze)
    with pytest.raises(TypeError, match="Expected an `UnfreezeSchedule`"):
        get_schedule(1.5)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: UnfreezeSchedule.table({0: "some"}), "or 'all'"),
        (lambda: UnfreezeSchedule.table({-1: 2}), "keys >= 0"),
        (lambda: UnfreezeSchedule.table({"x": 2}), "integer epochs/steps"),
        (lambda: UnfreezeSchedule.table({}), "non-empty dict"),
        (lambda: UnfreezeSchedule.gradual(every=0), "every"),
        (lambda: UnfreezeSchedule.gradual(head_epochs=1.5), "head_epochs"),
        (lambda: UnfreezeSchedule.table({0: 1}, unit="batch"), "unit"),
    ],
)
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
