"""The simulator's NMEA 0183 encoder and the bridge's parser are inverses within NMEA's
resolution, and the simulator's TCP and UDP outputs deliver what a real multiplexer would."""

import math
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from autopilot_ros.instruments.bridge import Bridge, BridgeConfig
from autopilot_ros.instruments.nmea0183 import Nmea0183Parser
from autopilot_ros.samples import (
    HeadingSample,
    ImuSample,
    RudderSample,
    SpeedSample,
    WindSample,
)
from autopilot_ros.sim.nmea_out import NmeaTcpServer, NmeaUdpSender, encode

DEG = math.pi / 180
KNOT = 1852 / 3600
FULL_SCALE = 35.0


def through_the_bridge(sample, stamp: float = 100.0):
    """Encode, parse, map: what the autopilot gets from instruments_node for `sample`."""
    parser = Nmea0183Parser()
    bridge = Bridge(BridgeConfig(rudder_full_scale=math.radians(FULL_SCALE)))
    text = ''.join(encode(sample, FULL_SCALE))
    out = []
    for reading in parser.feed(text.encode(), stamp):
        out += bridge.take(reading)
    assert parser.stats.parse_errors == 0 and parser.stats.checksum_errors == 0, text
    return out, text


def angle_close(a: float, b: float, tol: float) -> bool:
    return abs(math.remainder(a - b, 2 * math.pi)) <= tol


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 2 * math.pi, exclude_max=True))
def test_heading_round_trip_within_a_tenth_of_a_degree(heading):
    (back,), text = through_the_bridge(HeadingSample(1.0, heading))
    assert text.startswith('$IIHDM,')
    assert 0.0 <= back.heading < 2 * math.pi
    assert angle_close(back.heading, heading, 0.05 * DEG + 1e-9)


@settings(max_examples=300, deadline=None)
@given(st.floats(-math.pi, math.pi, exclude_min=True), st.floats(0, 70))
def test_apparent_wind_round_trip(awa, aws):
    (back,), text = through_the_bridge(WindSample(1.0, awa, aws))
    assert ',R,' in text
    assert angle_close(back.awa, awa, 0.05 * DEG + 1e-9)
    assert back.aws == pytest.approx(aws, abs=0.005 * KNOT + 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(-4.99, 29.99))  # the span's edges, less the encoder's rounding
def test_speed_through_water_round_trip(stw):
    (back,), _ = through_the_bridge(SpeedSample(1.0, stw))
    assert back.stw == pytest.approx(stw, abs=0.005 * KNOT + 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1.2, 1.2))
def test_rudder_round_trip_through_degrees_and_the_full_scale(angle):
    (back,), text = through_the_bridge(RudderSample(1.0, angle))
    assert text.startswith('$IIRSA,')
    assert back.angle == pytest.approx(angle, abs=0.05 / FULL_SCALE + 1e-9)


@settings(max_examples=300, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(-0.5, 0.5), st.floats(-2.0, 2.0))
def test_imu_round_trip_turn_rate_sign_and_attitude(roll, pitch, yaw_rate_z):
    sample = ImuSample(1.0, roll, pitch, 0.3, -0.2, yaw_rate_z, 0.1, 0.2, 9.8)
    out, text = through_the_bridge(sample)
    assert 'ROT' in text and 'XDR' in text
    imu = out[-1]  # the XDR's Imu carries the ROT just before it
    # ROT: 0.1 deg/min resolution; the sign survives both flips (z up -> starboard -> z up).
    assert imu.yaw_rate_z == pytest.approx(yaw_rate_z, abs=0.05 * DEG / 60 + 1e-12)
    assert imu.roll == pytest.approx(roll, abs=0.05 * DEG + 1e-12)
    assert imu.pitch == pytest.approx(pitch, abs=0.05 * DEG + 1e-12)
    # What NMEA 0183 has no sentence for is absent, not zero.
    assert not imu.rates_known and not imu.accel_known and imu.orientation_known
    assert math.isnan(imu.roll_rate) and math.isnan(imu.accel_z)


def test_a_turn_to_starboard_is_a_positive_rot_and_bow_up_a_positive_ptch():
    sample = ImuSample(1.0, 0.0, -10 * DEG, 0.0, 0.0, -0.1, 0.0, 0.0, 9.8)  # z < 0: stbd
    rot, xdr = encode(sample)
    assert rot.startswith(f'$IIROT,{math.degrees(0.1) * 60:.1f},A*')
    assert xdr.startswith('$IIXDR,A,10.0,D,PTCH,A,0.0,D,ROLL*')


def test_nothing_is_sent_for_a_value_nmea_cannot_say():
    assert encode(HeadingSample(1.0, math.nan)) == []
    assert encode(WindSample(1.0, 0.5, math.inf)) == []
    no_attitude = ImuSample(1.0, math.nan, math.nan, 0.0, 0.0, 0.1, 0.0, 0.0, 9.8,
                            orientation_known=False)
    assert [s[3:6] for s in encode(no_attitude)] == ['ROT']


def test_the_tcp_server_serves_every_client_and_drops_the_ones_that_leave():
    server = NmeaTcpServer('127.0.0.1', 0)
    try:
        a = socket.create_connection(('127.0.0.1', server.port))
        b = socket.create_connection(('127.0.0.1', server.port))
        end = time.monotonic() + 5
        while server.clients < 2 and time.monotonic() < end:
            time.sleep(0.01)
        lines = encode(HeadingSample(1.0, 1.0))
        server.send(lines)
        for conn in (a, b):
            conn.settimeout(5)
            assert conn.recv(100).decode() == lines[0]
        b.close()
        for _ in range(50):  # the broken pipe shows on a later send
            server.send(lines)
            if server.clients == 1:
                break
            time.sleep(0.01)
        assert server.clients == 1
        a.close()
    finally:
        server.close()


def test_the_udp_sender_sends_a_batch_as_one_datagram():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(('127.0.0.1', 0))
        rx.settimeout(5)
        sender = NmeaUdpSender('127.0.0.1', rx.getsockname()[1])
        lines = encode(HeadingSample(1.0, 1.0)) + encode(WindSample(1.0, -0.5, 5.0))
        sender.send(lines)
        sender.close()
        assert rx.recv(1000).decode() == ''.join(lines)
