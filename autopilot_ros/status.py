"""The pilot's outputs as messages: one mapping for the node, the bag writer and the reader.

`fill_status_msg` and `fill_command_msg` only set attributes and `*_from_msg` only read
them, so they serve rclpy messages (the node) and rosbags messages (bags) alike, like the
sensor converters of samples.py. OUTPUTS declares the two output topics training reads
back from a recording, next to the sensor inputs of inputs.INPUTS.
"""

from collections.abc import Callable
from dataclasses import dataclass
import math
from typing import Any

from autopilot_ros.pilot import POLICY_STANDBY, PilotOutput
from autopilot_ros.samples import RudderSample, stamp_seconds

HAND_STEERING_REASON = 'hand steering'


@dataclass(frozen=True, slots=True)
class StatusSample:
    """What the pilot was doing (autopilot/status), to tell hand steering from pilot steering."""

    stamp: float
    mode: str
    engaged: bool
    target: float
    target_heading: float
    command: float
    policy: int


def status_from_msg(msg: Any) -> StatusSample:
    return StatusSample(
        stamp_seconds(msg.header), msg.mode, bool(msg.engaged), msg.target,
        msg.target_heading, msg.command, int(msg.policy),
    )


def command_from_msg(msg: Any) -> RudderSample:
    """The command has the rudder's sign and scale, so it fits a RudderSample."""
    return RudderSample(stamp_seconds(msg.header), msg.command)


def fill_status_msg(msg: Any, out: PilotOutput, *, model_path: str = '',
                    model_sha256: str = '') -> None:
    """An AutopilotStatus from one tick's output (the header is the caller's)."""
    msg.mode = out.mode
    msg.engaged = out.engaged
    msg.target = out.target
    msg.target_heading = out.target_heading
    msg.heading_error = out.heading_error
    msg.command = out.command
    msg.raw_command = out.raw_command
    msg.policy = out.policy
    msg.reason = out.reason
    msg.model_path = model_path
    msg.model_sha256 = model_sha256
    msg.inference_time = out.inference_time
    msg.window_fill = out.window_fill
    msg.stale_inputs = list(out.stale_inputs)


# How long a command may be acted on after its stamp, in control periods (RudderCommand
# `valid_for`); the node offers a QoS deadline and liveliness lease of the same length.
COMMAND_VALID_PERIODS = 3
SEQUENCE_MODULUS = 2 ** 32  # RudderCommand.sequence is a uint32


def command_valid_for(rate_hz: float) -> float:
    """Seconds a command stays valid at this control rate (0.3 s at 10 Hz)."""
    return COMMAND_VALID_PERIODS / rate_hz


def fill_command_msg(msg: Any, out: PilotOutput, *, sequence: int,
                     valid_for: float) -> None:
    """A RudderCommand from one tick's output (the header is the caller's).

    `sequence` is the publisher's count of commands sent (the node owns the counter) and
    `valid_for` how long the command may be acted on (`command_valid_for`).
    """
    msg.command = out.command
    msg.engaged = out.engaged
    msg.policy = out.policy
    msg.sequence = sequence % SEQUENCE_MODULUS
    msg.valid_for = valid_for


def released_output(stamp: float, reason: str) -> PilotOutput:
    """The tick output of a pilot that lets go of the helm for good (node shutdown)."""
    return PilotOutput(
        stamp=stamp, command=0.0, raw_command=math.nan, engaged=False,
        policy=POLICY_STANDBY, reason=reason, mode='standby', target=0.0,
        target_heading=math.nan, heading_error=math.nan, window_fill=0, stale_inputs=[],
        inference_time=math.nan)


def output_of_status(sample: StatusSample) -> PilotOutput:
    """The tick output a recorded status stands for; what it does not say is NaN or empty."""
    return PilotOutput(
        stamp=sample.stamp, command=sample.command, raw_command=math.nan,
        engaged=sample.engaged, policy=sample.policy,
        reason='' if sample.engaged else HAND_STEERING_REASON, mode=sample.mode,
        target=sample.target, target_heading=sample.target_heading,
        heading_error=math.nan, window_fill=0, stale_inputs=[], inference_time=math.nan)


def hand_steering_status(stamp: float, mode: str, target: float, target_heading: float,
                         command: float) -> StatusSample:
    """The status a pilot in hand steering reports while a person steers `command`."""
    return StatusSample(stamp, mode, False, target, target_heading, command, POLICY_STANDBY)


@dataclass(frozen=True)
class OutputDef:
    """One output topic of the pilot that training reads back from recordings."""

    name: str  # relative topic name
    msg_type: str
    from_msg: Callable[[Any], Any]


OUTPUTS: tuple[OutputDef, ...] = (
    OutputDef('rudder_command', 'autopilot_ros/msg/RudderCommand', command_from_msg),
    OutputDef('autopilot/status', 'autopilot_ros/msg/AutopilotStatus', status_from_msg),
)
