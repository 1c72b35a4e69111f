"""The node's outgoing messages, built by plain functions of the pilot's state.

No rclpy here: these take the pilot, its last output and a stamp, and return messages, so
what an operator sees on `/diagnostics`, `autopilot/status`, `rudder_command` and in rviz
is tested without DDS. The node only stamps and publishes.
"""

from collections.abc import Sequence
import importlib
import math
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

from autopilot_ros.inputs import INPUT_BY_NAME, INPUT_NAMES
from autopilot_ros.msg import AutopilotStatus, RudderCommand
from autopilot_ros.pilot import POLICY_MODEL, POLICY_NAMES, Pilot, PilotOutput
from autopilot_ros.samples import WindSample
from autopilot_ros.status import fill_command_msg, fill_status_msg

BASE_FRAME = 'base_link'  # REP-105 body frame of the boat: x forward, y left, z up
HARDWARE_ID = 'autopilot'
RUDDER_DRAWN_ANGLE = math.radians(35.0)  # full rudder as drawn in rviz (drawing only)
RATE_WINDOW = 50  # receive times kept per input for its rate estimate


def message_class(msg_type: str) -> type:
    """The rclpy message class of a 'package/msg/Type' name (inputs.INPUTS spells them so)."""
    package, kind, name = msg_type.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def receive_rate(times: Sequence[float]) -> float:
    """Messages per second over the receive times kept (0 with fewer than two)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def command_msg(out: PilotOutput, stamp: Any, *, sequence: int,
                valid_for: float) -> RudderCommand:
    """The tick's command; the node passes its sequence counter and the validity period."""
    msg = RudderCommand()
    msg.header.stamp = stamp
    msg.header.frame_id = BASE_FRAME
    fill_command_msg(msg, out, sequence=sequence, valid_for=valid_for)
    return msg


def status_msg(out: PilotOutput, stamp: Any, policy: Any = None) -> AutopilotStatus:
    """The tick's status; `policy` (the running OnnxPolicy or None) names the model."""
    msg = AutopilotStatus()
    msg.header.stamp = stamp
    msg.header.frame_id = BASE_FRAME
    fill_status_msg(msg, out, model_path=policy.path if policy else '',
                    model_sha256=policy.sha256 if policy else '')
    return msg


def diagnostics_msg(pilot: Pilot, last_output: PilotOutput | None, *, now: float, stamp: Any,
                    rates: dict[str, float], tick_age: float = 0.0,
                    tick_limit: float = math.inf,
                    publishers: dict[str, int] | None = None) -> DiagnosticArray:
    """Two statuses: input freshness (ERROR when a required input is stale) and the pilot.

    `tick_age`: wall seconds since the last control tick; over `tick_limit` the loop has
    stopped (a simulator's /clock that stopped) and the pilot status is an ERROR.
    `publishers`: publishers per input topic; more than one is a WARN (a spoofer, or a
    second instrument wired to the same topic: either way the pilot reads both).
    """
    limits = pilot.config.limits.stale_limits
    inputs = DiagnosticStatus(name='autopilot: inputs', hardware_id=HARDWARE_ID)
    worst = DiagnosticStatus.OK
    for name in INPUT_NAMES:
        age = pilot.inputs.age(name, now)
        inputs.values.append(KeyValue(key=f'{name} rate Hz', value=f'{rates.get(name, 0.0):.1f}'))
        inputs.values.append(KeyValue(key=f'{name} age s', value=f'{age:.2f}'))
        if age > limits[name]:
            level = DiagnosticStatus.ERROR if INPUT_BY_NAME[name].required \
                else DiagnosticStatus.WARN
            worst = max(worst, level)
    inputs.level = worst
    inputs.message = 'all fresh' if worst == DiagnosticStatus.OK else 'stale inputs'
    crowded = {name: n for name, n in (publishers or {}).items() if n > 1}
    for name, count in (publishers or {}).items():
        inputs.values.append(KeyValue(key=f'{name} publishers', value=str(count)))
    if crowded:
        inputs.level = max(inputs.level, DiagnosticStatus.WARN)
        inputs.message += '; more than one publisher on ' + ', '.join(
            f'{name} ({n})' for name, n in crowded.items())

    out = last_output
    policy = pilot.policy
    p50, p99 = policy.latency_percentiles() if policy else (math.nan, math.nan)
    status = DiagnosticStatus(name='autopilot: pilot', hardware_id=HARDWARE_ID)
    status.values = [
        KeyValue(key='mode', value=pilot.mode),
        KeyValue(key='active policy', value=POLICY_NAMES[out.policy] if out else 'none'),
        KeyValue(key='reason', value=out.reason if out else ''),
        KeyValue(key='model', value=policy.identity if policy else 'none (PID)'),
        KeyValue(key='inference p50 ms', value=f'{p50 * 1e3:.3f}'),
        KeyValue(key='inference p99 ms', value=f'{p99 * 1e3:.3f}'),
        KeyValue(key='rejected samples', value=str(pilot.rejected_samples)),
        *(KeyValue(key=f'rejected samples: {reason}', value=str(count))
          for reason, count in sorted(pilot.rejected_by_reason.items())),
        KeyValue(key='non-finite model outputs', value=str(pilot.nonfinite_outputs)),
        KeyValue(key='model errors', value=str(pilot.model_errors)),
        KeyValue(key='guard holding the helm', value=pilot.guard.holding or 'none'),
        KeyValue(key='training envelope', value=_envelope_state(pilot)),
        *(KeyValue(key=f'guard trips: {name}', value=str(n))
          for name, n in pilot.guard.trips.items()),
        KeyValue(key='s since the last tick', value=f'{tick_age:.2f}'),
    ]
    # A loaded model that is not steering while the pilot is engaged is worth a warning.
    fallback = out is not None and out.engaged and out.policy != POLICY_MODEL \
        and policy is not None
    status.level = DiagnosticStatus.WARN if fallback else DiagnosticStatus.OK
    status.message = out.reason if (out and out.reason) else 'ok'
    if pilot.unloaded_reason:
        status.level = DiagnosticStatus.WARN
        status.message = pilot.unloaded_reason
    if tick_age > tick_limit:
        status.level = DiagnosticStatus.ERROR
        status.message = f'no control tick for {tick_age:.1f} s: its clock stopped'
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [inputs, status]
    return array


def _envelope_state(pilot: Pilot) -> str:
    """Whether the envelope guard can work: it needs a model that carries one."""
    if pilot.policy is None:
        return 'no model'
    if pilot.guard.envelope is None:
        return 'none in this model (exported before envelopes): not checked'
    return 'checked' if pilot.guard.config.envelope else 'in the model, check switched off'


def _arrow(mid: int, stamp: Any, angle_stbd: float, length: float,
           rgb: tuple[float, float, float], origin: tuple[float, float] = (0.0, 0.0)) -> Marker:
    """An arrow in the body frame pointing `angle_stbd` to starboard of the bow."""
    m = Marker(id=mid, ns='autopilot', type=Marker.ARROW, action=Marker.ADD)
    m.header.frame_id = BASE_FRAME
    m.header.stamp = stamp
    m.scale.x, m.scale.y, m.scale.z = 0.15, 0.3, 0.3
    m.color.r, m.color.g, m.color.b, m.color.a = (*rgb, 1.0)
    # Angles to starboard are negative about REP-103 z (y is left).
    x0, y0 = origin
    m.points = [Point(x=x0, y=y0), Point(x=x0 + length * math.cos(angle_stbd),
                                         y=y0 - length * math.sin(angle_stbd))]
    return m


def markers_msg(out: PilotOutput, wind: WindSample | None, stamp: Any) -> MarkerArray:
    """Arrows in the body frame (bow, target, apparent wind, rudder) and a text label."""
    markers = MarkerArray()
    markers.markers.append(_arrow(0, stamp, 0.0, 4.0, (0.2, 0.4, 1.0)))  # heading: the bow
    if math.isfinite(out.heading_error):
        markers.markers.append(_arrow(1, stamp, out.heading_error, 5.0, (0.1, 0.9, 0.1)))
    if wind is not None:  # drawn pointing where the wind comes from
        markers.markers.append(_arrow(2, stamp, wind.awa, 3.0, (1.0, 0.6, 0.0)))
    markers.markers.append(_arrow(3, stamp, math.pi - out.command * RUDDER_DRAWN_ANGLE, 1.0,
                                  (1.0, 0.1, 0.1), origin=(-2.0, 0.0)))
    text = Marker(id=4, ns='autopilot', type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    text.header.frame_id = BASE_FRAME
    text.header.stamp = stamp
    text.pose.position.z = 2.0
    text.scale.z = 0.5
    text.color.r = text.color.g = text.color.b = text.color.a = 1.0
    err = f'{math.degrees(out.heading_error):+.0f} deg' if math.isfinite(
        out.heading_error) else '--'
    text.text = f'{out.mode} {POLICY_NAMES[out.policy]} err {err} rudder {out.command:+.2f}'
    markers.markers.append(text)
    return markers
