"""NMEA 2000 as an instrument sends it: PGN payloads, frames, and a bus other processes share.

The inverse of nmea2000.py, for the tests, the bench and anyone who wants to play an
instrument to the bridge. The payloads are packed here from the PGN definitions (NMEA 2000
appendix B, as CANboat documents them: little-endian, angles 1e-4 rad, speeds 0.01 m/s,
rate of turn 3.125e-8 rad/s, the all-ones-but-one codes for "not available"), not from the
`nmea2000` package's tables the decoder uses, so a test checks one against the other.

`shared_bus()` finds a CAN bus that other processes on this computer can share, so the
installed instruments_node can be driven as a process: the kernel's `vcan0` where it exists,
else python-can's `udp_multicast` interface (python-can's `virtual` bus passes frames only
within one process). Two things about udp_multicast, measured on Linux, decide its settings:
- python-can binds every bus to ("", port) and Linux delivers a datagram for any group
  joined on the host to every socket bound to its port, so two buses on different groups
  but the same port hear each other: each shared bus gets a group AND a port of its own.
- python-can's default hop limit (IPv4 TTL) of 1 keeps a frame off routers, not off the
  wire: it leaves on the interface of the default route, to every host on the LAN. TTL 0
  keeps it on this host (looped back to local members only), so every bus made here sends
  with `hop_limit` 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import random
import socket
import struct
import subprocess

import can

from autopilot_ros.instruments.nmea2000 import can_id, fast_packet_frames

NA16 = 0x7FFF  # signed 16-bit "data not available"
NAU16 = 0xFFFF  # unsigned 16-bit "data not available"
MAGNETIC, TRUE = 1, 0  # 127250 heading reference
APPARENT = 2  # 130306 wind reference

__all__ = ['NA16', 'NAU16', 'MAGNETIC', 'TRUE', 'APPARENT', 'SharedBus', 'SharedBusUnavailable',
           'attitude', 'direction_data', 'fast_packet_frames', 'frame', 'heading', 'pad',
           'rate_of_turn', 'rudder', 'shared_bus', 'speed', 'vcan', 'wind']


def frame(pgn: int, data: bytes, source: int = 35) -> can.Message:
    """A single CAN frame of `pgn` from `source` (29-bit identifier, priority 2)."""
    return can.Message(arbitration_id=can_id(pgn, source), data=data, is_extended_id=True)


def pad(data: bytes) -> bytes:
    """A single-frame payload filled up to 8 bytes with 0xFF, as senders do."""
    return data + b'\xff' * (8 - len(data))


def heading(rad: float, deviation: int = NA16, variation: int = NA16,
            reference: int = MAGNETIC) -> bytes:
    """127250 Vessel Heading: SID, heading u16, deviation i16, variation i16 (raw 1e-4 rad),
    reference (2 bits)."""
    return struct.pack('<BHhhB', 0, round(rad * 1e4), deviation, variation, 0xFC | reference)


def rate_of_turn(rad_s: float) -> bytes:
    """127251 Rate of Turn: SID, rate i32 in 3.125e-8 rad/s, > 0 to starboard."""
    return pad(struct.pack('<Bi', 0, round(rad_s / 3.125e-8)))


def attitude(roll: float, pitch: float, yaw: int = NA16) -> bytes:
    """127257 Attitude: SID, yaw, pitch (> 0 BOW UP), roll (> 0 starboard down), i16 1e-4 rad."""
    return pad(struct.pack('<Bhhh', 0, yaw, round(pitch * 1e4), round(roll * 1e4)))


def wind(speed_ms: float, angle: float, reference: int = APPARENT) -> bytes:
    """130306 Wind Data: SID, speed u16 0.01 m/s, angle u16 1e-4 rad clockwise from the bow,
    reference (3 bits)."""
    return pad(struct.pack('<BHHB', 0, round(speed_ms * 100), round(angle * 1e4),
                           0xF8 | reference))


def speed(stw: float) -> bytes:
    """128259 Speed: SID, water referenced u16 0.01 m/s, ground referenced (not available)."""
    return pad(struct.pack('<BHHB', 0, round(stw * 100), NAU16, 0))


def rudder(position: float, instance: int = 0) -> bytes:
    """127245 Rudder: instance, direction order, angle order (n/a), position i16 1e-4 rad."""
    return pad(struct.pack('<BBhh', instance, 0xFF, NA16, round(position * 1e4)))


def direction_data(stw: float, heading_rad: float = 1.5) -> bytes:
    """130577 Direction Data (a fast packet, 14 bytes): mode/COG reference, SID, COG, SOG,
    heading, speed through water, set, drift."""
    return struct.pack('<BBHHHHHH', 0xC0, 0, 10000, 200, round(heading_rad * 1e4),
                       round(stw * 100), NAU16, NAU16)


# -- a bus other processes share ------------------------------------------------------------
class SharedBusUnavailable(RuntimeError):
    """Neither vcan0 nor multicast on this computer: the message says what is missing."""


@dataclass(frozen=True)
class SharedBus:
    """A python-can bus by interface and channel, with the options every Bus on it needs."""

    interface: str
    channel: str
    options: dict = field(default_factory=dict)  # python-can keyword arguments

    def open(self) -> can.BusABC:
        return can.Bus(interface=self.interface, channel=self.channel, **self.options)

    def node_args(self) -> list[str]:
        """instruments_node's ROS arguments for this bus (after `--ros-args`)."""
        return ['-p', 'source:=nmea2000', '-p', f'nmea2000.interface:={self.interface}',
                '-p', f'nmea2000.channel:={self.channel}']

    def env(self) -> dict[str, str]:
        """The environment a process needs to open this bus by interface and channel alone.

        python-can reads the other options from CAN_CONFIG (JSON), its documented
        environment configuration; instruments_node opens its bus that way.
        """
        return {'CAN_CONFIG': json.dumps(self.options)} if self.options else {}

    def describe(self) -> str:
        extra = ''.join(f', {k} {v}' for k, v in self.options.items())
        return f'{self.interface} {self.channel}{extra}'


def vcan(create: bool = True) -> str:
    """'vcan0' when a kernel vcan interface exists (or, with `create`, can be made), else ''."""
    try:
        if subprocess.run(['ip', 'link', 'show', 'vcan0'], capture_output=True,
                          timeout=5).returncode != 0:
            if not create:
                return ''
            made = subprocess.run(['ip', 'link', 'add', 'dev', 'vcan0', 'type', 'vcan'],
                                  capture_output=True, timeout=5)
            if made.returncode != 0:
                return ''
        subprocess.run(['ip', 'link', 'set', 'up', 'vcan0'], capture_output=True, timeout=5)
        with can.Bus(interface='socketcan', channel='vcan0'):
            return 'vcan0'
    except (OSError, can.CanError, subprocess.SubprocessError):
        return ''


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('', 0))
        return s.getsockname()[1]


def shared_bus(*, use_vcan: bool = True, rng: random.Random | None = None) -> SharedBus:
    """vcan0 if there is one, else udp_multicast on a group and port of its own, checked.

    vcan0 is one bus for every process on the computer; a multicast bus made here is this
    caller's alone (a random group in 239.255.0.0/16, organisation-local scope, and a free
    port) and stays on this host (hop limit 0). Raises SharedBusUnavailable, saying what is
    missing, when a frame sent on it does not come back.
    """
    if use_vcan and vcan():
        return SharedBus('socketcan', 'vcan0')
    rng = rng or random.SystemRandom()
    group = f'239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}'
    bus = SharedBus('udp_multicast', group, {'port': _free_udp_port(), 'hop_limit': 0})
    try:
        rx = bus.open()
    except RuntimeError as exc:  # python-can: msgpack is not installed
        raise SharedBusUnavailable(f'no vcan0, and python-can udp_multicast cannot run: {exc}'
                                   ) from None
    except (OSError, can.CanError) as exc:
        cause = exc.__cause__ or exc
        raise SharedBusUnavailable(
            f'no vcan0, and no IPv4 multicast here: python-can udp_multicast could not join '
            f'{group} ({cause}); it joins on the interface of the route to the group: this '
            'computer needs a default route, or `ip route add 239.255.0.0/16 dev lo`') from None
    try:
        with bus.open() as tx:
            probe = frame(59904, b'\x00\xee\x00', source=254)  # ISO request, never read
            tx.send(probe)
            got = rx.recv(timeout=2.0)
    except (OSError, can.CanError) as exc:
        rx.shutdown()
        cause = exc.__cause__ or exc
        raise SharedBusUnavailable(
            f'no vcan0, and multicast on {group} port {bus.options["port"]} failed to send '
            f'({cause})') from None
    rx.shutdown()
    if got is None or got.arbitration_id != probe.arbitration_id:
        raise SharedBusUnavailable(
            f'no vcan0, and a frame sent on multicast group {group} port '
            f'{bus.options["port"]} did not come back within 2 s (multicast loopback off, or '
            'a firewall dropping it)')
    return bus
