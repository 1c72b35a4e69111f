"""An IMU that does not measure everything (REP-145) is read as NaN, never as made-up zeros.

The instrument bridges publish sensor_msgs/Imu with what NMEA gives: a turn rate, maybe an
attitude, never accelerations. The pilot must then not feed its model zeros for the rest,
and its PID must still steer on the heading and that turn rate.
"""

import math
from types import SimpleNamespace as NS

import pytest

from autopilot_ros.conventions import GRAVITY, roll_pitch_to_quaternion
from autopilot_ros.features import InputState
from autopilot_ros.inputs import Rejected, check_sample
from autopilot_ros.pid_pilot import PIDGains, PIDPilot
from autopilot_ros.pilot import POLICY_FALLBACK_PID, POLICY_MODEL, Pilot, PilotConfig
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    WindSample,
    absent_fields,
    fill_imu_msg,
    imu_from_msg,
)

DEG = math.pi / 180
NAN = math.nan


def imu_msg(q=(0.0, 0.0, 0.0, 1.0), rates=(0.1, -0.2, -0.3), accel=(0.5, -1.0, 9.8),
            absent=()) -> NS:
    """An Imu-shaped message; `absent` blocks carry covariance[0] = -1 as REP-145 says."""
    cov = {b: [-1.0 if b in absent else 0.0] + [0.0] * 8
           for b in ('orientation', 'angular_velocity', 'linear_acceleration')}
    return NS(header=NS(stamp=NS(sec=3, nanosec=0)),
              orientation=NS(x=q[0], y=q[1], z=q[2], w=q[3]),
              orientation_covariance=cov['orientation'],
              angular_velocity=NS(x=rates[0], y=rates[1], z=rates[2]),
              angular_velocity_covariance=cov['angular_velocity'],
              linear_acceleration=NS(x=accel[0], y=accel[1], z=accel[2]),
              linear_acceleration_covariance=cov['linear_acceleration'])


def test_absent_orientation_and_accelerations_read_as_nan_not_zero():
    q = roll_pitch_to_quaternion(20 * DEG, 5 * DEG)
    sample = imu_from_msg(imu_msg(q, absent=('orientation', 'linear_acceleration')))
    assert not sample.orientation_known and not sample.accel_known and sample.rates_known
    assert math.isnan(sample.roll) and math.isnan(sample.pitch)
    assert all(math.isnan(v) for v in (sample.accel_x, sample.accel_y, sample.accel_z))
    assert (sample.roll_rate, sample.pitch_rate, sample.yaw_rate_z) == (0.1, -0.2, -0.3)
    assert sample.orientation_norm == 1.0
    assert absent_fields(sample) == ('roll', 'pitch', 'accel_x', 'accel_y', 'accel_z')
    assert check_sample(sample) is None  # absent is not broken: the reading counts


def test_only_the_absent_block_is_nan():
    q = roll_pitch_to_quaternion(20 * DEG, 5 * DEG)
    no_accel = imu_from_msg(imu_msg(q, absent=('linear_acceleration',)))
    assert no_accel.roll == pytest.approx(20 * DEG) and no_accel.orientation_known
    no_attitude = imu_from_msg(imu_msg(q, absent=('orientation',)))
    assert (no_attitude.accel_x, no_attitude.accel_z) == (0.5, 9.8)
    assert absent_fields(no_attitude) == ('roll', 'pitch')


def test_a_rate_of_turn_sensor_gives_z_alone_and_is_taken():
    sample = imu_from_msg(imu_msg(rates=(NAN, NAN, -0.05),
                                  absent=('orientation', 'linear_acceleration')))
    assert not sample.rates_known and sample.yaw_rate_z == -0.05
    assert math.isnan(sample.roll_rate) and math.isnan(sample.pitch_rate)
    assert check_sample(sample) is None


def test_an_imu_without_angular_velocity_is_dropped_as_no_turn_rate():
    sample = imu_from_msg(imu_msg(absent=('angular_velocity',)))
    assert math.isnan(sample.yaw_rate_z) and not sample.rates_known
    assert check_sample(sample) == (Rejected.NO_TURN_RATE, 'angular_velocity absent')
    state = InputState()
    assert not state.update(sample) and state.imu is None


def test_a_nan_the_sensor_did_not_declare_is_still_a_broken_reading():
    """Only x AND y NaN with z finite is a rate-of-turn sensor; one NaN axis is a fault."""
    one_axis = imu_from_msg(imu_msg(rates=(NAN, 0.1, 0.2)))
    assert one_axis.rates_known
    assert check_sample(one_axis)[0] is Rejected.NONFINITE
    all_axes = imu_from_msg(imu_msg(rates=(NAN, NAN, NAN)))
    assert all_axes.rates_known and check_sample(all_axes)[0] is Rejected.NONFINITE
    undeclared = imu_from_msg(imu_msg(accel=(NAN, 0.0, 9.8)))
    assert undeclared.accel_known and check_sample(undeclared)[0] is Rejected.NONFINITE


def test_a_known_field_out_of_range_is_still_dropped_when_others_are_absent():
    sample = imu_from_msg(imu_msg(rates=(NAN, NAN, 50.0), absent=('linear_acceleration',)))
    assert check_sample(sample)[0] is Rejected.IMPLAUSIBLE


def test_messages_without_covariance_fields_read_as_before():
    """rosbags and older tests hand messages with no covariance: everything is measured."""
    msg = imu_msg()
    for block in ('orientation', 'angular_velocity', 'linear_acceleration'):
        delattr(msg, f'{block}_covariance')
    sample = imu_from_msg(msg)
    assert sample.orientation_known and sample.rates_known and sample.accel_known
    assert absent_fields(sample) == ()


@pytest.mark.parametrize('absent', [(), ('orientation',), ('linear_acceleration',),
                                    ('orientation', 'linear_acceleration')])
def test_fill_marks_what_is_absent_and_reads_back_the_same(absent):
    source = imu_from_msg(imu_msg(roll_pitch_to_quaternion(10 * DEG, -3 * DEG),
                                  rates=(NAN, NAN, 0.02), absent=absent))
    blank = imu_msg(q=(9.0, 9.0, 9.0, 9.0), rates=(9.0, 9.0, 9.0), accel=(9.0, 9.0, 9.0))
    fill_imu_msg(blank, source)
    for block in ('orientation', 'linear_acceleration'):
        assert (blank.__dict__[f'{block}_covariance'][0] == -1.0) == (block in absent)
    if 'orientation' in absent:
        o = blank.orientation
        assert (o.x, o.y, o.z, o.w) == (0.0, 0.0, 0.0, 0.0)
    if 'linear_acceleration' in absent:
        a = blank.linear_acceleration
        assert (a.x, a.y, a.z) == (0.0, 0.0, 0.0)
    back = imu_from_msg(blank)
    assert absent_fields(back) == absent_fields(source)
    assert back.yaw_rate_z == 0.02
    if 'orientation' not in absent:
        assert back.roll == pytest.approx(10 * DEG) and back.pitch == pytest.approx(-3 * DEG)


class Counting:
    """A model that answers 0.9 and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0
        self.last_inference_time = 0.001

    def infer(self, window) -> float:
        self.calls += 1
        return 0.9


def _run(pilot: Pilot, imu_for, ticks: int = 40):
    outs = []
    for k in range(ticks):
        t = 10.0 + 0.1 * k
        pilot.update(imu_for(t))
        pilot.update(HeadingSample(t, 0.0))
        pilot.update(WindSample(t, 60 * DEG, 8.0))
        outs.append(pilot.step(t))
    return outs


def bridge_imu(t: float, yaw_rate_z: float = -0.05) -> ImuSample:
    """What instruments_node publishes from ROT alone, as the autopilot reads it."""
    return ImuSample(t, NAN, NAN, NAN, NAN, yaw_rate_z, NAN, NAN, NAN, 1.0,
                     orientation_known=False, rates_known=False, accel_known=False)


def test_a_model_never_steers_on_absent_imu_fields_and_the_pid_uses_the_turn_rate():
    model = Counting()
    pilot = Pilot(PilotConfig(), model)
    pilot.set_mode('compass', 10 * DEG)
    outs = _run(pilot, bridge_imu)
    assert model.calls == 0  # the window never fills with rows holding NaN
    assert all(o.policy == POLICY_FALLBACK_PID for o in outs)
    assert all(math.isfinite(o.command) for o in outs)
    assert pilot.rejected_samples == 0  # the readings count: nothing was dropped
    # The operator is told why, by name, not 'feature row not finite'.
    assert ('the IMU does not measure roll, pitch, roll_rate, pitch_rate, accel_x, accel_y, '
            'accel_z: no model can steer on it') in outs[-1].reason
    # The PID's D term acts on the bridge's turn rate: the same boat turning to starboard
    # at 0.05 rad/s (z = -0.05) asks for less starboard rudder than one not turning.
    pid = PIDPilot(PIDGains())
    turning = pid.response(10 * DEG, 0.05, None)
    still = pid.response(10 * DEG, 0.0, None)
    assert turning < still
    first = outs[0].raw_command
    assert first == pytest.approx(turning, abs=0.02)
    assert first != pytest.approx(still, abs=0.02)


def test_the_same_pilot_with_a_full_imu_lets_the_model_steer():
    """The control case: the only difference above is the absent fields."""
    model = Counting()
    pilot = Pilot(PilotConfig(), model)
    pilot.set_mode('compass', 10 * DEG)
    outs = _run(pilot, lambda t: ImuSample(t, 0.0, 0.0, 0.0, 0.0, -0.05, 0.0, 0.0, GRAVITY))
    assert model.calls > 0 and outs[-1].policy == POLICY_MODEL


# -- the edges mutation testing found unpinned ------------------------------------------
def test_a_covariance_of_any_length_is_read_safely():
    # No covariance entries at all: nothing is marked absent (and nothing is indexed).
    msg = imu_msg()
    for block in ('orientation', 'angular_velocity', 'linear_acceleration'):
        setattr(msg, f'{block}_covariance', [])
    full = imu_from_msg(msg)
    assert absent_fields(full) == () and full.roll_rate == pytest.approx(0.1)
    # A one-entry covariance saying -1 marks its block absent like a nine-entry one.
    msg = imu_msg()
    msg.linear_acceleration_covariance = [-1.0]
    assert absent_fields(imu_from_msg(msg)) == ('accel_x', 'accel_y', 'accel_z')


def test_rates_marked_absent_read_as_nan_even_when_the_message_holds_zeros():
    s = imu_from_msg(imu_msg(rates=(0.0, 0.0, 0.0), absent=('angular_velocity',)))
    assert math.isnan(s.roll_rate) and math.isnan(s.pitch_rate) and math.isnan(s.yaw_rate_z)
    assert not s.rates_known


def test_an_attitude_only_sample_writes_zero_rates_marked_absent():
    attitude = ImuSample(1.0, 0.1, 0.02, NAN, NAN, NAN, NAN, NAN, NAN, 1.0,
                         orientation_known=True, rates_known=False, accel_known=False)
    msg = imu_msg(rates=(5.0, 6.0, 7.0))
    fill_imu_msg(msg, attitude)
    w = msg.angular_velocity
    assert (w.x, w.y, w.z) == (0.0, 0.0, 0.0)
    assert msg.angular_velocity_covariance[0] == -1.0
    assert msg.angular_velocity_covariance[1:] == [0.0] * 8


def test_an_absent_block_does_not_excuse_a_broken_field_after_it():
    # Orientation absent (roll and pitch, the first fields, NaN): an infinite acceleration
    # further on is still a broken reading.
    broken = ImuSample(1.0, NAN, NAN, 0.1, 0.1, -0.1, 0.0, math.inf, GRAVITY, 1.0,
                       orientation_known=False)
    assert check_sample(broken, {})[0] is Rejected.NONFINITE
