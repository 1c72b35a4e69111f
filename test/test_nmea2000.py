"""NMEA 2000 in: frames packed from the PGN definitions (instruments/nmea2000_out.py), on a
CAN bus, and fuzzed.

The bus is a kernel vcan interface when this machine lets us create one (`ip link add dev
vcan0 type vcan`, root and the vcan module), else python-can's virtual bus: the same
python-can API, frames passed between Bus objects in this process. The installed
instruments_node on a bus shared between processes: test_instruments_node.py.
"""

import math
import struct
import threading
import time
import uuid

import can
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from autopilot_ros.instruments.checks import reading_problem
from autopilot_ros.instruments.nmea2000 import (
    PGNS,
    Nmea2000Decoder,
    Nmea2000Source,
    can_id,
    fast_packet_frames,
    pgn_of,
)

# Payloads packed from the PGN definitions, not from the decoder's tables.
from autopilot_ros.instruments.nmea2000_out import (
    NA16,
    NAU16,
    attitude,
    direction_data,
    frame,
    heading,
    pad,
    rate_of_turn,
    rudder,
    speed,
    vcan,
    wind,
)
from autopilot_ros.instruments.readings import (
    AttitudeReading,
    HeadingReading,
    RudderReading,
    SpeedReading,
    TurnRateReading,
    WindReading,
)
from autopilot_ros.instruments.transport import Backoff

T = 500.0


def decode(*frames: can.Message, decoder: Nmea2000Decoder | None = None) -> list:
    decoder = decoder or Nmea2000Decoder()
    out = []
    for f in frames:
        out += decoder.decode(f, T)
    return out


def one(pgn: int, data: bytes):
    (reading,) = decode(frame(pgn, data))
    return reading


def test_the_can_identifier_carries_the_pgn_and_source_as_iso_11783_says():
    for pgn in PGNS:
        assert pgn_of(can_id(pgn, 35)) == (pgn, 35)
    assert can_id(127250, 35, priority=2) == 0x09F11223  # 2<<26 | 0x1F112 << 8 | 0x23
    assert pgn_of(0x0DF11223) == (127250, 0x23)  # priority 3: the same PGN
    # PDU1 (PF < 240): the PS byte is a destination, not part of the PGN.
    assert pgn_of(0x18EA2301) == (0xEA00, 1)


def test_127250_magnetic_heading_adds_deviation_and_true_is_taken_as_is():
    assert one(127250, heading(1.0)) == HeadingReading(T, pytest.approx(1.0), False)
    with_dev = one(127250, heading(1.0, deviation=-500))
    assert with_dev.heading == pytest.approx(0.95)
    assert one(127250, heading(0.01, deviation=-500)).heading == pytest.approx(
        2 * math.pi - 0.04)  # wraps
    assert one(127250, heading(3.0, reference=0)) == HeadingReading(T, pytest.approx(3.0), True)


def test_127251_rate_of_turn_positive_is_to_starboard():
    assert one(127251, rate_of_turn(0.05)) == TurnRateReading(T, pytest.approx(0.05))
    assert one(127251, rate_of_turn(-0.02)).rate == pytest.approx(-0.02)


def test_127257_roll_kept_and_pitch_bow_up_flipped():
    reading = one(127257, attitude(roll=0.1, pitch=0.05))
    assert reading == AttitudeReading(T, pytest.approx(0.1), pytest.approx(-0.05))


def test_130306_apparent_wind_from_port_is_negative_and_true_wind_is_ignored():
    assert one(130306, wind(7.5, 1.0)) == WindReading(T, pytest.approx(1.0), pytest.approx(7.5))
    assert one(130306, wind(7.5, 2 * math.pi - 1.0)).awa == pytest.approx(-1.0, abs=1e-4)
    decoder = Nmea2000Decoder()
    for reference in (0, 1, 3, 4):
        assert decode(frame(130306, wind(7.5, 1.0, reference)), decoder=decoder) == []
    assert decoder.stats.ignored == 4


def test_128259_speed_through_water_and_127245_rudder_of_the_chosen_instance():
    assert one(128259, speed(3.12)) == SpeedReading(T, pytest.approx(3.12))
    assert one(127245, rudder(-0.2)) == RudderReading(T, pytest.approx(-0.2))
    assert decode(frame(127245, rudder(-0.2, instance=1))) == []
    second = Nmea2000Decoder(rudder_instance=1)
    assert decode(frame(127245, rudder(0.3, instance=1)), decoder=second)[0].angle == \
        pytest.approx(0.3)


@pytest.mark.parametrize('pgn, data', [
    (127250, heading(1.0, reference=1)[:1] + b'\xff\xff' + heading(1.0)[3:]),  # heading N/A
    (127250, struct.pack('<BHhhB', 0, 0xFFFE, NA16, NA16, 0xFD)),  # out-of-range code
    (127250, heading(1.0, reference=3)),  # reference N/A
    (127251, pad(struct.pack('<Bi', 0, 0x7FFFFFFF))),
    (127251, pad(struct.pack('<Bi', 0, 0x7FFFFFFE))),
    (127257, pad(struct.pack('<Bhhh', 0, NA16, NA16, 100))),  # pitch N/A
    (127257, pad(struct.pack('<Bhhh', 0, NA16, 100, 0x7FFE))),  # roll out of range
    (130306, pad(struct.pack('<BHHB', 0, NAU16, 10000, 0xFA))),  # speed N/A
    (130306, pad(struct.pack('<BHHB', 0, 500, NAU16, 0xFA))),  # angle N/A
    (128259, pad(struct.pack('<BHHB', 0, NAU16, 100, 0))),
    (127245, pad(struct.pack('<BBhh', 0, 0xFF, 100, NA16))),  # position N/A
])
def test_data_not_available_codes_are_absent_never_values(pgn, data):
    decoder = Nmea2000Decoder()
    assert decode(frame(pgn, data), decoder=decoder) == []
    assert decoder.stats.ignored == 1 and decoder.stats.readings == 0


def test_truncated_frames_are_counted_errors_not_half_read_values():
    decoder = Nmea2000Decoder()
    assert decode(frame(127250, heading(1.0)[:3]), frame(127251, b'\x00\x01'),
                  frame(130306, b''), decoder=decoder) == []
    assert decoder.stats.parse_errors == 3 and 'truncated' in decoder.stats.last_error


def test_a_heading_past_two_pi_is_an_error_and_north_rounded_up_is_north():
    decoder = Nmea2000Decoder()
    assert decode(frame(127250, struct.pack('<BHhhB', 0, 65000, NA16, NA16, 0xFD)),
                  decoder=decoder) == []
    assert decoder.stats.parse_errors == 1
    assert one(127250, struct.pack('<BHhhB', 0, 62832, NA16, NA16, 0xFD)).heading == 0.0


def test_other_pgns_and_non_n2k_frames_are_ignored():
    decoder = Nmea2000Decoder()
    position = frame(129025, pad(b'\x00' * 8))
    standard = can.Message(arbitration_id=0x123, data=b'\x00' * 8, is_extended_id=False)
    error = can.Message(arbitration_id=can_id(127250, 1), is_error_frame=True,
                        is_extended_id=True)
    assert decode(position, standard, error, decoder=decoder) == []
    assert decoder.stats.ignored == 3 and decoder.stats.received == 3


def test_fast_packet_is_reassembled_from_its_frames():
    frames = fast_packet_frames(direction_data(3.21), sequence=5)
    assert len(frames) == 3 and frames[0][:2] == bytes([5 << 5, 14])
    assert [f[0] for f in frames] == [0xA0, 0xA1, 0xA2]
    decoder = Nmea2000Decoder()
    out = [decode(frame(130577, f), decoder=decoder) for f in frames]
    assert out[0] == [] and out[1] == []  # waiting for the rest
    assert out[2] == [SpeedReading(T, pytest.approx(3.21))]


def test_fast_packets_of_two_senders_interleave_and_a_lost_frame_loses_only_its_packet():
    a = fast_packet_frames(direction_data(1.0), sequence=1)
    b = fast_packet_frames(direction_data(2.0), sequence=2)
    decoder = Nmea2000Decoder()
    order = [frame(130577, a[0], 10), frame(130577, b[0], 20), frame(130577, a[1], 10),
             frame(130577, b[1], 20), frame(130577, b[2], 20), frame(130577, a[2], 10)]
    assert [r.stw for r in decode(*order, decoder=decoder)] == pytest.approx([2.0, 1.0])
    lost = fast_packet_frames(direction_data(3.0), sequence=3)
    again = fast_packet_frames(direction_data(4.0), sequence=4)
    out = decode(frame(130577, lost[0]), frame(130577, lost[2]),  # frame 1 never came
                 *(frame(130577, f) for f in again), decoder=decoder)
    assert [r.stw for r in out] == pytest.approx([4.0])


def test_a_fast_packet_declaring_too_few_bytes_is_refused():
    short = fast_packet_frames(direction_data(1.0)[:8])
    decoder = Nmea2000Decoder()
    assert decode(*(frame(130577, f) for f in short), decoder=decoder) == []
    assert decoder.stats.parse_errors >= 1 and decoder.stats.readings == 0


# -- fuzz ------------------------------------------------------------------------------------
def _check(readings):
    for reading in readings:
        assert reading_problem(reading) == '', reading


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(PGNS) + [60928, 129029]),
                          st.integers(0, 255), st.binary(max_size=8)), max_size=12))
def test_fuzz_random_payloads_on_every_pgn_read(frames):
    decoder = Nmea2000Decoder()
    for pgn, source, data in frames:
        _check(decoder.decode(frame(pgn, data, source), T))


VALID = [(127250, heading(1.0)), (127251, rate_of_turn(0.05)),
         (127257, attitude(0.1, 0.05)), (130306, wind(7.5, 1.0)), (128259, speed(3.12)),
         (127245, rudder(-0.2))]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 7), st.integers(0, 255)),
                                        min_size=1, max_size=4))
def test_fuzz_mutated_valid_frames(valid, flips):
    pgn, data = valid
    data = bytearray(data)
    for pos, value in flips:
        data[pos] = value
    _check(Nmea2000Decoder().decode(frame(pgn, bytes(data)), T))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 31), st.integers(0, 255), st.binary(max_size=8)),
                max_size=10))
def test_fuzz_fast_packet_frames_in_any_order(frames):
    decoder = Nmea2000Decoder()
    for index, length, rest in frames:
        data = bytes([index, length]) + rest if index % 32 == 0 else bytes([index]) + rest
        _check(decoder.decode(frame(130577, data[:8]), T))


# -- a real bus --------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def bus_channel():
    channel = vcan()
    if channel:
        return 'socketcan', channel
    return 'virtual', f'n2k-test-{uuid.uuid4().hex[:8]}'  # vcan not allowed here


def test_a_source_on_the_bus_reads_every_pgn_and_a_fast_packet(bus_channel):
    interface, channel = bus_channel
    source = Nmea2000Source(interface, channel, backoff=Backoff(0.05, 0.2))
    got, lock = [], threading.Lock()

    def emit(batch):
        with lock:
            got.extend(batch)

    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(emit, stop), daemon=True)
    thread.start()
    try:
        assert source.opened.wait(10.0), source.stats.last_error
        with can.Bus(interface=interface, channel=channel) as tx:
            for pgn, data in VALID:
                tx.send(frame(pgn, data, source=12))
            tx.send(frame(127250, heading(1.0)[:4]))  # truncated: counted, survived
            for f in fast_packet_frames(direction_data(2.5), sequence=6):
                tx.send(frame(130577, f, source=12))
            end = time.monotonic() + 10.0
            while time.monotonic() < end:
                with lock:
                    if len(got) >= 7:
                        break
                time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=5.0)
    assert not thread.is_alive()
    kinds = [type(r) for r in got]
    assert kinds == [HeadingReading, TurnRateReading, AttitudeReading, WindReading,
                     SpeedReading, RudderReading, SpeedReading]
    assert got[-1].stw == pytest.approx(2.5)
    assert all(abs(r.stamp - time.time()) < 30 for r in got)  # receive time on this clock
    s = source.stats
    assert s.received == 10 and s.readings == 7 and s.parse_errors == 1


def test_a_bus_that_cannot_be_opened_is_retried_with_backoff():
    source = Nmea2000Source('socketcan', 'no-such-can-interface', backoff=Backoff(0.05, 0.2))
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(lambda b: None, stop), daemon=True)
    thread.start()
    end = time.monotonic() + 10.0
    while source.stats.reconnects < 2 and time.monotonic() < end:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=5.0)
    assert source.stats.reconnects >= 2 and not source.stats.connected
    assert source.stats.last_error
