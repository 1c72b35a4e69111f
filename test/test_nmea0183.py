"""NMEA 0183 in: sentences from the specification and from real boats, through real sockets
and a pty, and fuzzed. Every unit and sign is checked against the package's conventions.

Real sentences are quoted from the sample recordings that ship with signalk-server
(github.com/SignalK/signalk-server, samples/plaka.log: a sailing yacht's NMEA 0183
multiplexer; samples/n2kd-183-merrimac.log: NMEA 2000 instruments converted to 0183 by
CANboat's n2kd, hence the numeric talker IDs).
"""

import math
import os
import socket
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from autopilot_ros.instruments.checks import reading_problem
from autopilot_ros.instruments.nmea0183 import KNOT, Nmea0183Parser, Nmea0183Source
from autopilot_ros.instruments.readings import (
    AttitudeReading,
    HeadingReading,
    RudderReading,
    SpeedReading,
    TurnRateReading,
    WindReading,
)
from autopilot_ros.instruments.transport import Backoff, LineFramer

DEG = math.pi / 180
T = 1000.0  # a receive time


def sentence(body: str, start: str = '$') -> str:
    """A sentence with its checksum: XOR of every character between $ and *."""
    checksum = 0
    for ch in body:
        checksum ^= ord(ch)
    return f'{start}{body}*{checksum:02X}'


def parse(*lines: str, parser: Nmea0183Parser | None = None, stamp: float = T) -> list:
    parser = parser or Nmea0183Parser()
    out = []
    for line in lines:
        out += parser.parse_line(line, stamp)
    return out


def one(line: str):
    (reading,) = parse(line)
    return reading


# -- the specification, sentence by sentence -----------------------------------------------
def test_hdm_and_hdt_are_magnetic_and_true_headings_in_radians():
    assert one(sentence('HCHDM,238.5,M')) == HeadingReading(T, 238.5 * DEG, False)
    assert one(sentence('HEHDT,274.07,T')) == HeadingReading(T, 274.07 * DEG, True)
    assert one(sentence('HEHDT,360.0,T')).heading == 0.0  # 360 is north


def test_hdg_applies_deviation_east_positive_but_not_variation():
    east = one(sentence('HCHDG,98.3,2.0,E,12.6,W'))
    assert east == HeadingReading(T, pytest.approx(100.3 * DEG), False)
    west = one(sentence('HCHDG,1.0,3.0,W,,'))
    assert west.heading == pytest.approx(358.0 * DEG)  # wraps into [0, 2*pi)
    assert one(sentence('HCHDG,98.3,,,12.6,W')).heading == pytest.approx(98.3 * DEG)


def test_rot_is_degrees_per_minute_and_negative_is_a_turn_to_port():
    port = one(sentence('TIROT,-30.0,A'))
    assert isinstance(port, TurnRateReading)
    assert port.rate == pytest.approx(-0.5 * DEG)  # 30 deg/min = 0.5 deg/s, to port
    assert one(sentence('TIROT,120,A')).rate == pytest.approx(2.0 * DEG)
    assert parse(sentence('TIROT,120,V')) == []  # invalid data: dropped


@pytest.mark.parametrize('angle, awa_deg', [(0, 0), (45, 45), (90, 90), (180, 180),
                                            (270, -90), (315, -45), (359.9, -0.1)])
def test_mwv_angle_clockwise_from_bow_becomes_positive_from_starboard(angle, awa_deg):
    reading = one(sentence(f'WIMWV,{angle},R,10.0,M,A'))
    assert reading == WindReading(T, pytest.approx(awa_deg * DEG), 10.0)


@pytest.mark.parametrize('unit, factor', [('N', KNOT), ('K', 1 / 3.6), ('M', 1.0),
                                          ('S', 0.44704)])
def test_mwv_speed_units_become_metres_per_second(unit, factor):
    assert one(sentence(f'WIMWV,30,R,10.0,{unit},A')).aws == pytest.approx(10.0 * factor)


def test_mwv_true_wind_and_invalid_status_are_not_apparent_wind():
    parser = Nmea0183Parser()
    assert parse(sentence('WIMWV,30,T,10.0,N,A'), sentence('WIMWV,30,R,10.0,N,V'),
                 parser=parser) == []
    assert parser.stats.ignored == 2 and parser.stats.parse_errors == 0


def test_vhw_speed_through_water_knots_else_kmh():
    assert one(sentence('VWVHW,,T,,M,5.0,N,9.26,K')) == SpeedReading(T, pytest.approx(
        5.0 * KNOT))
    assert one(sentence('VWVHW,,T,,M,,N,9.0,K')).stw == pytest.approx(2.5)


def test_rsa_negative_is_rudder_to_port_and_keeps_its_sign():
    assert one(sentence('IIRSA,-12.5,A,,V')) == RudderReading(T, pytest.approx(-12.5 * DEG))
    assert one(sentence('IIRSA,8.0,A,,')).angle == pytest.approx(8.0 * DEG)
    assert one(sentence('IIRSA,,V,-3.0,A')).angle == pytest.approx(-3.0 * DEG)  # port only
    assert parse(sentence('IIRSA,8.0,V,,')) == []


def test_xdr_roll_keeps_its_sign_and_pitch_bow_up_is_flipped_to_bow_down():
    reading = one(sentence('YXXDR,A,4.0,D,PTCH,A,-2.5,D,ROLL'))
    assert isinstance(reading, AttitudeReading)
    assert reading.roll == pytest.approx(-2.5 * DEG)  # port side down
    assert reading.pitch == pytest.approx(-4.0 * DEG)  # bow up -> negative (bow down > 0)
    assert one(sentence('IIXDR,A,10.0,D,HEEL,A,-1.0,D,PITCH')).pitch == pytest.approx(
        1.0 * DEG)


def test_xdr_roll_and_pitch_in_separate_sentences_pair_within_a_second():
    parser = Nmea0183Parser()
    assert parse(sentence('IIXDR,A,3.0,D,ROLL'), parser=parser, stamp=T) == []
    (paired,) = parse(sentence('IIXDR,A,1.0,D,PTCH'), parser=parser, stamp=T + 0.2)
    assert paired.roll == pytest.approx(3 * DEG) and paired.pitch == pytest.approx(-1 * DEG)
    # A lone pitch two seconds later: the roll is too old to pair with.
    assert parse(sentence('IIXDR,A,1.0,D,PTCH'), parser=parser, stamp=T + 2.5) == []


def test_xdr_other_transducers_are_not_attitude():
    parser = Nmea0183Parser()
    assert parse(sentence('IIXDR,C,19.5,C,AIRTEMP,P,1.02,B,BARO'), parser=parser) == []
    assert parser.stats.ignored == 1
    assert parse(sentence('IIXDR,A,4.0,R,PTCH,A,1.0,R,ROLL')) == []  # radians? not in spec


def test_empty_fields_are_absent_never_zero():
    parser = Nmea0183Parser()
    lines = [sentence(b) for b in ('IIHDM,,M', 'IIHDT,,T', 'IIMWV,,R,,N,A', 'IIVHW,,T,,M,,N,,K',
                                   'IIROT,,A', 'IIRSA,,V,,V', 'IIXDR,A,,D,PTCH,A,,D,ROLL')]
    assert parse(*lines, parser=parser) == []
    assert parser.stats.ignored == len(lines) and parser.stats.parse_errors == 0


@pytest.mark.parametrize('body', ['IIHDM,nan,M', 'IIHDM,inf,M', 'IIHDT,400.0,T',
                                  'IIHDT,-1,T', 'WIMWV,361,R,5,N,A', 'WIMWV,30,R,-5,N,A',
                                  'WIMWV,30,R,5,X,A', 'WIMWV,30,Q,5,N,A', 'IIRSA,95,A,,',
                                  'IIROT,1e9,A', 'IIHDG,10,5,X,,', 'IIXDR,A,100,D,PTCH,A,0,D,ROLL',
                                  'IIHDM,12.3.4,M', 'IIROT,5,Z', 'WIMWV,30,R,500,M,A'])
def test_impossible_values_are_counted_parse_errors_and_never_readings(body):
    parser = Nmea0183Parser()
    assert parse(sentence(body), parser=parser) == []
    assert parser.stats.parse_errors == 1 and parser.stats.readings == 0
    assert parser.stats.last_error


def test_checksums_are_checked_and_a_missing_one_refused_unless_allowed():
    parser = Nmea0183Parser()
    good = sentence('HCHDM,100.0,M')
    bad = good[:-2] + ('00' if good[-2:] != '00' else '01')
    assert parse(bad, '$HCHDM,100.0,M', good, parser=parser) == [
        HeadingReading(T, 100 * DEG, False)]
    assert parser.stats.checksum_errors == 2
    lenient = Nmea0183Parser(require_checksum=False)
    assert len(parse('$HCHDM,100.0,M', bad, parser=lenient)) == 1  # a wrong one: never
    assert lenient.stats.checksum_errors == 1


def test_other_sentences_ais_and_proprietary_ones_are_ignored_not_errors():
    parser = Nmea0183Parser()
    lines = ['$GPGLL,6005.071,N,02332.346,E,095559,A,D*43',  # plaka.log
             '!AIVDM,1,1,,A,13u?etPv2;0n:dDPwUM1U1Cb069D,0*24',
             sentence('PGRME,15.0,M,45.0,M,25.0,M'), sentence('IIZZZ,1,2')]
    assert parse(*lines, parser=parser) == []
    assert parser.stats.ignored == 4 and parser.stats.parse_errors == 0


# -- real recordings -------------------------------------------------------------------------
PLAKA = """$IIVHW,,T,,M,06.11,N,11.31,K*51
$IIVPW,4.71,N,,*03
$IIMWV,338,R,13.41,N,A*2C
$IIHDT,,T*0C
$IIHDM,,M*0C
$IIMWV,313,T,08.16,N,A*2B
$IIDBT,034.25,f,010.44,M,005.64,F*27
$IIVHW,,T,,M,06.12,N,11.33,K*50
$IIMWV,336,R,12.82,N,A*2C
"""

MERRIMAC = """$02MWV,327.6,R,1.89,N*62
$24HDG,182.1,00.0,E,00.0,E*45
$04HDM,186.5,M*2C
$24MWV,88.8,R,0.36,N*5B
$23DBS,01.9,f,0.58,M,00.3,F*21
"""


def test_a_yachts_multiplexer_recording_from_signalk_servers_samples():
    parser = Nmea0183Parser()
    readings = parser.feed(PLAKA.encode(), T)
    assert readings == [
        SpeedReading(T, pytest.approx(6.11 * KNOT)),
        WindReading(T, pytest.approx(-22 * DEG), pytest.approx(13.41 * KNOT)),
        SpeedReading(T, pytest.approx(6.12 * KNOT)),
        WindReading(T, pytest.approx(-24 * DEG), pytest.approx(12.82 * KNOT)),
    ]
    s = parser.stats
    assert (s.received, s.readings, s.checksum_errors, s.parse_errors) == (9, 4, 0, 0)
    assert s.ignored == 5  # VPW, DBT, true MWV and the empty HDT and HDM


def test_n2kd_converted_sentences_with_numeric_talkers_and_no_mwv_status():
    parser = Nmea0183Parser()
    readings = parser.feed(MERRIMAC.encode(), T)
    assert readings == [
        WindReading(T, pytest.approx(-32.4 * DEG), pytest.approx(1.89 * KNOT)),
        HeadingReading(T, pytest.approx(182.1 * DEG), False),
        HeadingReading(T, pytest.approx(186.5 * DEG), False),
        WindReading(T, pytest.approx(88.8 * DEG), pytest.approx(0.36 * KNOT)),
    ]
    assert parser.stats.checksum_errors == 0 and parser.stats.parse_errors == 0


# -- framing ---------------------------------------------------------------------------------
def test_lines_split_across_reads_and_any_line_end_are_put_back_together():
    parser = Nmea0183Parser()
    data = (sentence('HCHDM,10.0,M') + '\r\n' + sentence('HCHDM,20.0,M') + '\r'
            + sentence('HCHDM,30.0,M') + '\n').encode()
    out = []
    for k in range(0, len(data), 5):
        out += parser.feed(data[k:k + 5], T)
    assert [round(r.heading / DEG, 3) for r in out] == [10.0, 20.0, 30.0]


def test_garbage_before_a_sentence_and_binary_noise_are_survived():
    parser = Nmea0183Parser()
    data = (b'\x00\xff\xfe' + sentence('HCHDM,10.0,M').encode() + b'\r\n'
            + b'\x81\x82noise\r\n' + b'$HCHDM,1' + b'\r\n'  # a sentence cut short
            + sentence('HCHDM,20.0,M').encode() + b'\r\n')
    out = parser.feed(data, T)
    assert [round(r.heading / DEG, 3) for r in out] == [10.0, 20.0]
    assert parser.stats.parse_errors + parser.stats.checksum_errors == 2


def test_an_overlong_line_is_dropped_whole_and_memory_stays_bounded():
    framer = LineFramer(max_line=100)
    assert framer.feed(b'x' * 60) == []
    assert framer.feed(b'y' * 60) == [] and framer.overlong == 1
    assert len(framer._buf) == 0  # discarding until the next line end
    assert framer.feed(b'z' * 10_000) == [] and framer.overlong == 1
    assert framer.feed(b'tail\nok\n') == [b'ok']
    parser = Nmea0183Parser()
    parser.feed(b'$' + b'A' * 1000 + b'\r\n' + sentence('HCHDM,5.0,M').encode() + b'\n', T)
    assert parser.stats.parse_errors == 1 and parser.stats.readings == 1


def test_a_datagram_ends_its_last_line():
    framer = LineFramer()
    assert framer.feed(b'one\r\ntwo', final=True) == [b'one', b'two']
    assert framer.feed(b'three', final=True) == [b'three']


def test_backoff_doubles_to_its_cap_and_resets():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


# -- fuzz: no input makes the parser raise or emit a value that cannot be ------------------
def _check(readings):
    for reading in readings:
        assert reading_problem(reading) == '', reading
        assert all(math.isfinite(getattr(reading, f)) for f in reading.__slots__
                   if f != 'true_north')


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_fuzz_random_bytes(chunks):
    parser = Nmea0183Parser()
    for chunk in chunks:
        _check(parser.feed(chunk, T))
    _check(parser.feed(b'\r\n', T, final=True))


VALID = ['HCHDG,98.3,2.0,E,12.6,W', 'HCHDM,238.5,M', 'HEHDT,274.07,T', 'TIROT,-30.0,A',
         'WIMWV,214.8,R,10.1,N,A', 'VWVHW,,T,,M,5.0,N,9.26,K', 'IIRSA,-12.5,A,,V',
         'YXXDR,A,4.0,D,PTCH,A,-2.5,D,ROLL']
ALPHABET = '0123456789.,-+eEnaiNAVRTMKSDPTCHROLXw *$!\r\n\x00'


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3),
                                                  st.sampled_from(ALPHABET)), max_size=6))
def test_fuzz_mutated_valid_sentences_with_correct_checksums(body, edits):
    """Checksums recomputed after the edit, so the mutants reach the field parsing."""
    chars = list(body)
    for pos, op, ch in edits:
        pos = min(pos, len(chars))
        if op == 0:
            chars.insert(pos, ch)
        elif op == 1 and chars:
            chars[min(pos, len(chars) - 1)] = ch
        elif op == 2 and chars:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars[pos:pos] = list(',' * 3)
    parser = Nmea0183Parser()
    _check(parser.feed((sentence(''.join(chars)) + '\r\n').encode(), T))
    s = parser.stats
    assert s.received >= 1 or ''.join(chars).strip() == ''


# -- transports: a real TCP server, UDP datagrams, a pty as the serial port ----------------
class Collector:
    def __init__(self) -> None:
        self.readings: list = []
        self.lock = threading.Lock()

    def __call__(self, batch) -> None:
        with self.lock:
            self.readings.extend(batch)

    def headings(self) -> list[float]:
        with self.lock:
            return [round(r.heading / DEG, 3) for r in self.readings
                    if isinstance(r, HeadingReading)]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def running():
    """Start a source's run() in a thread; stop and join it at the end of the test."""
    started = []

    def start(source):
        stop = threading.Event()
        collect = Collector()
        thread = threading.Thread(target=source.run, args=(collect, stop), daemon=True)
        thread.start()
        started.append((stop, thread))
        return collect

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=5.0)
        assert not thread.is_alive(), 'a source did not stop when asked'


def fast_backoff() -> Backoff:
    return Backoff(0.05, 0.2)


def test_tcp_client_reads_a_multiplexer_and_reconnects_when_it_drops(running):
    server = socket.create_server(('127.0.0.1', 0))
    server.settimeout(10.0)  # a source that never comes fails the test, never hangs it
    port = server.getsockname()[1]
    source = Nmea0183Source('tcp', host='127.0.0.1', port=port, backoff=fast_backoff())
    got = running(source)
    conn, _ = server.accept()
    # ... and a partial sentence as the link drops: never joined to the next connection's.
    conn.sendall((sentence('HCHDM,10.0,M') + '\r\n$HCHDM,2').encode())
    assert wait_until(lambda: got.headings() == [10.0])
    assert source.stats.connected
    conn.close()  # the multiplexer reboots
    conn, _ = server.accept()  # the source comes back by itself
    conn.sendall((sentence('HCHDM,20.0,M') + '\r\n').encode())
    assert wait_until(lambda: got.headings() == [10.0, 20.0])
    assert source.stats.reconnects >= 1 and source.stats.parse_errors == 0
    conn.close()
    server.close()


def test_tcp_refused_and_silent_servers_are_counted_reconnects(running):
    free = socket.socket()
    free.bind(('127.0.0.1', 0))
    port = free.getsockname()[1]
    free.close()  # nobody listens here: connection refused
    refused = Nmea0183Source('tcp', host='127.0.0.1', port=port, backoff=fast_backoff())
    running(refused)
    assert wait_until(lambda: refused.stats.reconnects >= 3)
    assert not refused.stats.connected and 'refused' in refused.stats.last_error.lower()

    server = socket.create_server(('127.0.0.1', 0))
    server.settimeout(10.0)
    silent = Nmea0183Source('tcp', host='127.0.0.1', port=server.getsockname()[1],
                            silence_timeout=0.6, backoff=fast_backoff())
    running(silent)
    first, _ = server.accept()  # accepts, then never says a word
    second, _ = server.accept()  # the source gave up on the first and came back
    assert silent.stats.reconnects >= 1 and 'no data' in silent.stats.last_error
    first.close()
    second.close()
    server.close()


def test_udp_listener_takes_each_datagram_as_whole_sentences(running):
    source = Nmea0183Source('udp', host='127.0.0.1', port=0, backoff=fast_backoff())
    got = running(source)
    assert wait_until(lambda: source.bound_port is not None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        address = ('127.0.0.1', source.bound_port)
        tx.sendto((sentence('HCHDM,10.0,M') + '\r\n' + sentence('HCHDM,20.0,M')).encode(),
                  address)  # no line end after the last sentence: the datagram ends it
        tx.sendto(b'\xde\xad\xbe\xef garbage', address)
        tx.sendto(sentence('WIMWV,90,R,10,M,A').encode(), address)
        assert wait_until(lambda: len(got.readings) == 3)
    assert got.headings() == [10.0, 20.0]
    assert got.readings[-1] == WindReading(pytest.approx(time.time(), abs=30),
                                           pytest.approx(math.pi / 2), 10.0)
    assert source.stats.parse_errors == 1


def test_serial_port_reads_a_pty_and_a_vanished_port_is_a_counted_reconnect(running):
    pytest.importorskip('serial')
    master, slave = os.openpty()
    path = os.ttyname(slave)
    source = Nmea0183Source('serial', device=path, baudrate=4800, backoff=fast_backoff())
    got = running(source)
    assert wait_until(lambda: source.stats.connected)
    os.write(master, (sentence('HCHDM,10.0,M') + '\r\n' + sentence('TIROT,60,A')
                      + '\r\n').encode())
    assert wait_until(lambda: len(got.readings) == 2)
    assert got.readings[1].rate == pytest.approx(1 * DEG)
    os.close(master)  # the USB adapter is pulled
    os.close(slave)
    assert wait_until(lambda: source.stats.reconnects >= 2 and not source.stats.connected)
    assert source.stats.last_error


def test_a_missing_serial_device_never_raises_out_of_run(running):
    source = Nmea0183Source('serial', device='/dev/does-not-exist-nmea', backoff=fast_backoff())
    running(source)
    assert wait_until(lambda: source.stats.reconnects >= 2)
    assert 'does-not-exist' in source.stats.last_error


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ValueError, match='transport'):
        Nmea0183Source('carrier-pigeon')
    with pytest.raises(ValueError, match='port'):
        Nmea0183Source('tcp', port=70000)
