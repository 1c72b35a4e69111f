"""Signal K source: the delta parser's signs and refusals, a fuzz of it, and the client
against the real signalk-server (`make signalk-server`) replaying its own recordings from
real boats, with security on, killed and restarted; plus servers that never answer.

The server tests skip only where Node.js is absent; a Node without the server installed is
a failure that says to run `make signalk-server`.
"""

import json
import math
import pathlib
import socket
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from autopilot_ros.instruments.readings import (
    AttitudeReading,
    HeadingReading,
    RudderReading,
    SpeedReading,
    TurnRateReading,
    WindReading,
)
from autopilot_ros.instruments.signalk import (
    PATHS,
    Backoff,
    DeltaParser,
    SignalKSource,
    stream_url,
    subscribe_message,
)
from autopilot_ros.samples import HeadingSample, ImuSample, RudderSample, SpeedSample, WindSample
from autopilot_ros.sim.signalk_out import RUDDER_MAX_RAD, SignalKFeed, samples_to_delta

SELF = 'vessels.urn:mrn:signalk:uuid:c0d79334-4e25-4245-8892-54e8ccc8021d'
KNOT = 1852.0 / 3600.0


def delta(*values, context='vessels.self', source='n2k.115', timestamp='2024-05-01T12:00:00Z'):
    return json.dumps({'context': context, 'updates': [
        {'$source': source, 'timestamp': timestamp,
         'values': [{'path': p, 'value': v} for p, v in values]}]})


def parse(*values, **kwargs):
    return DeltaParser().parse(delta(*values, **kwargs), 100.0)


# -- the parser: the specification's signs ----------------------------------------------
def test_heading_magnetic_and_true_are_wrapped_and_flagged():
    assert parse(('navigation.headingMagnetic', -0.5)).readings == [
        HeadingReading(100.0, 2 * math.pi - 0.5, False)]
    assert parse(('navigation.headingTrue', 1.0)).readings == [HeadingReading(100.0, 1.0, True)]


def test_one_heading_at_a_time_never_alternating_between_instruments():
    """Magnetic and true (or two compasses) differ by the variation (or deviation):
    alternating between them would be a heading that jumps. The first holds until silent
    for SOURCE_SWITCH_S; the others are ignored, counted."""
    parser = DeltaParser()
    magnetic = parser.parse(delta(('navigation.headingMagnetic', 1.0)), 10.0)
    both = parser.parse(delta(('navigation.headingTrue', 1.1), ('navigation.headingMagnetic',
                                                                  1.01)), 10.5)
    assert magnetic.readings == [HeadingReading(10.0, 1.0, False)]
    assert both.readings == [HeadingReading(10.5, 1.01, False)] and both.ignored == 1
    other_compass = parser.parse(delta(('navigation.headingMagnetic', 1.3), source='b'), 11.0)
    assert other_compass.readings == [] and other_compass.ignored == 1
    assert parser.held_by('heading') == ('navigation.headingMagnetic', 'n2k.115')
    # The first compass falls silent for over 2 s: the next one takes over.
    later = parser.parse(delta(('navigation.headingTrue', 1.1)), 13.0)
    assert later.readings == [HeadingReading(13.0, 1.1, True)]
    # Told which: only that path, whichever comes first.
    true_only = DeltaParser(heading='true')
    r = true_only.parse(delta(('navigation.headingMagnetic', 1.0), ('navigation.headingTrue',
                                                                      1.1)), 1.0)
    assert r.readings == [HeadingReading(1.0, 1.1, True)] and r.ignored == 1
    with pytest.raises(ValueError, match="heading 'compass' is not one of"):
        DeltaParser(heading='compass')


def test_one_wind_instrument_at_a_time():
    parser = DeltaParser()
    a = parser.parse(delta(('environment.wind.angleApparent', 0.5),
                           ('environment.wind.speedApparent', 6.0), source='mast'), 1.0)
    b = parser.parse(delta(('environment.wind.angleApparent', -0.5),
                           ('environment.wind.speedApparent', 9.0), source='spare'), 1.1)
    assert a.readings == [WindReading(1.0, 0.5, 6.0)] and b.readings == [] and b.ignored == 2


def test_rate_of_turn_positive_to_starboard_unchanged():
    # schema: "Rate of turn (+ve is change to starboard)"; ours: > 0 to starboard.
    assert parse(('navigation.rateOfTurn', 0.05)).readings == [TurnRateReading(100.0, 0.05)]


def test_attitude_roll_kept_pitch_negated():
    # schema: roll "+ve is list to starboard" (ours: starboard down, same); pitch "+ve is
    # bow up" (ours: bow down): negated. Yaw is not used.
    r = parse(('navigation.attitude', {'roll': 0.1, 'pitch': 0.05, 'yaw': 3.0}))
    assert r.readings == [AttitudeReading(100.0, 0.1, -0.05)]


def test_wind_pairs_angle_and_speed_and_wraps_to_pi():
    # schema: angleApparent "negative to port"; ours: > 0 from starboard. 338 deg from a
    # server that did not wrap is 22 deg from port.
    r = parse(('environment.wind.angleApparent', math.radians(338)),
              ('environment.wind.speedApparent', 6.9))
    assert len(r.readings) == 1
    wind = r.readings[0]
    assert isinstance(wind, WindReading)
    assert wind.awa == pytest.approx(math.radians(-22))
    assert wind.aws == 6.9


def test_wind_halves_in_separate_deltas_pair_by_source_and_timestamp():
    parser = DeltaParser()
    a = parser.parse(delta(('environment.wind.angleApparent', -0.7)), 10.0)
    assert a.readings == []
    other = parser.parse(delta(('environment.wind.speedApparent', 9.0), source='other'), 10.0)
    assert other.readings == []  # another instrument's half is not this one's partner
    b = parser.parse(delta(('environment.wind.speedApparent', 5.0)), 10.01)
    assert b.readings == [WindReading(10.01, -0.7, 5.0)]
    # A half whose partner is older than WIND_PAIR_S (another timestamp) is not paired.
    parser.parse(delta(('environment.wind.angleApparent', 0.3), timestamp='t1'), 20.0)
    late = parser.parse(delta(('environment.wind.speedApparent', 4.0), timestamp='t2'), 22.0)
    assert late.readings == []


def test_speed_and_rudder():
    # schema: rudderAngle "+ve is rudder to Starboard", the server maps NMEA RSA ("-" turns
    # to port) onto it directly: > 0 turns the boat to starboard, as ours.
    r = parse(('navigation.speedThroughWater', 3.2), ('steering.rudderAngle', -0.3))
    assert r.readings == [SpeedReading(100.0, 3.2), RudderReading(100.0, -0.3)]


def test_hello_gives_the_self_context_and_other_vessels_are_ignored():
    parser = DeltaParser()
    hello = parser.parse(json.dumps({'name': 'signalk-server', 'version': '2.23.0',
                                     'self': SELF, 'roles': ['master', 'main']}), 1.0)
    assert hello.ignored == 1 and parser.self_context == SELF
    mine = parser.parse(delta(('navigation.headingTrue', 1.0), context=SELF), 2.0)
    assert len(mine.readings) == 1
    ais = parser.parse(delta(('navigation.headingTrue', 1.0),
                             context='vessels.urn:mrn:imo:mmsi:230099999'), 2.0)
    assert ais.readings == [] and ais.ignored == 1 and ais.errors == 0
    no_context = parser.parse(json.dumps({'updates': [
        {'values': [{'path': 'navigation.rateOfTurn', 'value': 0.0}]}]}), 3.0)
    assert len(no_context.readings) == 1  # the spec: no context means self


@pytest.mark.parametrize('values, errors, ignored', [
    ([('navigation.headingTrue', None)], 0, 1),  # null: "not available"
    ([('navigation.headingTrue', '1.0')], 1, 0),
    ([('navigation.headingTrue', True)], 1, 0),
    ([('navigation.headingTrue', 200.0)], 1, 0),  # degrees sent as radians
    ([('environment.wind.speedApparent', -1.0)], 1, 0),
    ([('steering.rudderAngle', 2.0)], 1, 0),
    ([('navigation.attitude', {'roll': 0.1})], 0, 1),  # roll-only: no partial reading
    ([('navigation.attitude', {'roll': 0.1, 'pitch': None})], 0, 1),
    ([('navigation.attitude', [0.1, 0.2])], 1, 0),
    ([('navigation.attitude', {'roll': 0.1, 'pitch': 'x'})], 1, 0),
    ([('navigation.position', {'latitude': 60.1, 'longitude': 24.7})], 0, 1),
    ([('navigation.rateOfTurn', 10 ** 400)], 1, 0),
])
def test_bad_or_absent_values_are_counted_never_read(values, errors, ignored):
    r = parse(*values)
    assert r.readings == []
    assert (r.errors, r.ignored) == (errors, ignored)
    if errors:
        assert values[0][0] in r.last_error


def test_a_number_too_big_for_a_float_is_an_error_of_its_path():
    r = DeltaParser().parse('{"updates": [{"values": [{"path": "navigation.headingTrue", '
                            '"value": 1e400}]}]}', 1.0)
    assert r.readings == [] and r.errors == 1
    assert r.last_error == 'navigation.headingTrue: not a finite number'


@pytest.mark.parametrize('text', [
    b'\xff\xfe', '', 'null', '[1, 2]', '{"updates": 5}', '{"updates": [1]}',
    '{"updates": [{"values": {"a": 1}}]}', '{"updates": [{"values": [{"value": 1}]}]}',
    '{"updates": [{"values": [{"path": "navigation.rateOfTurn"}]}]}',
    '{"updates": [{"values": [{"path": "navigation.rateOfTurn", "value": NaN}]}]}',
    '{"context": 5, "updates": []}', '[' * 100000,
])
def test_malformed_messages_are_one_counted_error(text):
    r = DeltaParser().parse(text, 1.0)
    assert r.readings == [] and r.errors == 1 and r.last_error


def test_stream_url_and_subscription():
    assert stream_url('localhost:3000') == 'ws://localhost:3000/signalk/v1/stream?subscribe=none'
    assert stream_url('http://pi.local') == 'ws://pi.local/signalk/v1/stream?subscribe=none'
    assert stream_url('wss://[::1]:3443/signalk/v1/stream?subscribe=all&token=abc') == \
        'wss://[::1]:3443/signalk/v1/stream?token=abc&subscribe=none'
    for bad in ('ftp://x', 'ws://', 'ws://host:port'):
        with pytest.raises(ValueError, match='Signal K url'):
            stream_url(bad)
    subscription = json.loads(subscribe_message())
    assert subscription['context'] == 'vessels.self'
    assert [s['path'] for s in subscription['subscribe']] == list(PATHS)


def test_the_source_describes_itself_without_the_token_a_url_may_carry():
    source = SignalKSource('ws://pi.local:3000/signalk/v1/stream?token=secret')
    assert source.describe() == 'ws://pi.local:3000/signalk/v1/stream'
    assert 'secret' in source.url  # still sent: the server reads it there


def test_a_websockets_too_old_for_the_client_is_one_clear_message(monkeypatch):
    import websockets
    monkeypatch.setattr(websockets, '__version__', '10.4')  # Debian 12's, Ubuntu 24.04's
    with pytest.raises(RuntimeError, match='needs websockets >= 15, found 10.4: pip install'):
        SignalKSource('ws://127.0.0.1:3000')


@pytest.mark.parametrize('kwargs, message', [
    ({'open_timeout': 0}, 'open_timeout must be a number of seconds > 0'),
    ({'ping_timeout': math.nan}, 'ping_timeout must be'),
    ({'backoff_initial': 5.0, 'backoff_cap': 1.0}, 'backoff_cap must be >= backoff_initial'),
    ({'heading': 'gyro'}, "heading 'gyro' is not one of auto, magnetic, true"),
])
def test_bad_settings_are_one_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SignalKSource('ws://127.0.0.1:3000', **kwargs)


def test_backoff_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


# -- fuzz ----------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30)


def _assert_sane(readings):
    for reading in readings:
        fields = [getattr(reading, name) for name in reading.__slots__]
        assert all(math.isfinite(x) for x in fields if isinstance(x, float)), reading
        if isinstance(reading, HeadingReading):
            assert 0.0 <= reading.heading < 2 * math.pi
        if isinstance(reading, WindReading):
            assert -math.pi < reading.awa <= math.pi and reading.aws >= 0.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON)
def test_fuzz_random_json_never_raises(doc):
    result = DeltaParser().parse(json.dumps(doc), 1.0)
    _assert_sane(result.readings)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS + ('navigation.position', '')),
       value=JSON | st.floats() | st.fixed_dictionaries(
           {'roll': st.floats() | JSON, 'pitch': st.floats() | JSON}),
       drop=st.sampled_from([None, 'context', 'updates', 'values', 'path', 'value',
                             '$source', 'timestamp']),
       cut=st.integers(min_value=0, max_value=400))
def test_fuzz_mutated_deltas_never_raise_never_emit_non_finite(path, value, drop, cut):
    doc = {'context': 'vessels.self', 'updates': [
        {'$source': 'x', 'timestamp': 't', 'values': [{'path': path, 'value': value}]}]}
    for holder in (doc, doc['updates'][0], doc['updates'][0]['values'][0]):
        holder.pop(drop, None)
    text = json.dumps(doc)  # floats() gives NaN and inf: JSON's NaN / Infinity tokens
    parser = DeltaParser()
    _assert_sane(parser.parse(text, 1.0).readings)
    _assert_sane(parser.parse(text[:cut], 1.0).readings)  # truncated on the wire


# -- the sim's encoder: a round trip through the parser ---------------------------------
SIM_SAMPLES = [
    ImuSample(1.00, roll=0.12, pitch=0.03, roll_rate=0.0, pitch_rate=0.0, yaw_rate_z=-0.04,
              accel_x=0.0, accel_y=0.0, accel_z=9.8),
    HeadingSample(1.01, 4.2),
    WindSample(1.02, -0.9, 7.5),
    SpeedSample(1.03, 3.1),
    RudderSample(1.04, -0.25),
]


def test_sim_encoder_round_trip_through_the_parser():
    text = samples_to_delta(SIM_SAMPLES, epoch=1.7e9)
    readings = DeltaParser().parse(text, 5.0).readings
    assert readings == [
        TurnRateReading(5.0, 0.04),  # -angular_velocity.z: a starboard turn; first, so the
        AttitudeReading(5.0, 0.12, 0.03),  # attitude's Imu has it. Pitch negated twice.
        HeadingReading(5.0, 4.2, False),
        WindReading(5.0, -0.9, 7.5),
        SpeedReading(5.0, 3.1),
        RudderReading(5.0, -0.25 * RUDDER_MAX_RAD),
    ]
    update = json.loads(text)['updates'][0]
    assert update['timestamp'] == '2023-11-14T22:13:21.000Z'
    assert samples_to_delta([HeadingSample(0.0, math.nan)]) is None


# -- the real signalk-server ------------------------------------------------------------
def _server(tmp_path_factory, **kwargs):
    from autopilot_ros.instruments.signalk_server import (
        LocalSignalKServer,
        SignalKServerUnavailable,
        node_executable,
    )
    if node_executable() is None:
        pytest.skip('Node.js is not installed: the real signalk-server cannot run here')
    try:
        server = LocalSignalKServer(tmp_path_factory.mktemp('signalk'), **kwargs)
    except SignalKServerUnavailable as exc:
        pytest.fail(str(exc))
    server.start()
    return server


@pytest.fixture(scope='module')
def n2k_server(tmp_path_factory):
    """signalk-server replaying its NMEA 2000 recording from the Arcona 34 Aava."""
    server = _server(tmp_path_factory, sample='n2k')
    yield server
    server.close()


class Collector:
    """Runs a source in its thread, as the instruments node does, and keeps the readings."""

    def __init__(self, source):
        self.source = source
        self.readings = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=source.run, args=(self._emit, self.stop),
                                       daemon=True)

    def _emit(self, batch):
        with self.lock:
            self.readings.extend(batch)

    def of(self, kind):
        with self.lock:
            return [r for r in self.readings if isinstance(r, kind)]

    def wait(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), 'the source did not return after stop'


def _n2k_values(path: pathlib.Path):
    """Decode the recording's own PGNs from the NMEA 2000 definitions (not the server's
    decoder): 127250 heading (uint16 1e-4 rad; reference 0 = true), 130306 wind (uint16
    0.01 m/s, uint16 1e-4 rad; reference 2 = apparent), 128259 speed through water (uint16
    0.01 m/s). 0xFFFF is "not available"."""
    heading, wind, stw = set(), set(), set()
    for line in path.read_text().splitlines():
        fields = line.split(',')
        if len(fields) < 8:
            continue
        pgn, data = int(fields[2]), bytes(int(x, 16) for x in fields[6:])
        u16 = [int.from_bytes(data[i:i + 2], 'little') for i in range(1, len(data) - 1, 2)]
        if pgn == 127250 and u16[0] != 0xFFFF and data[7] & 3 == 0:
            heading.add(round(u16[0] * 1e-4, 4))
        elif pgn == 130306 and data[5] & 7 == 2 and 0xFFFF not in u16[:2]:
            angle = int.from_bytes(data[3:5], 'little') * 1e-4
            wind.add((round(math.remainder(angle, 2 * math.pi), 4),
                      round(int.from_bytes(data[1:3], 'little') * 0.01, 2)))
        elif pgn == 128259 and u16[0] != 0xFFFF:
            stw.add(round(u16[0] * 0.01, 2))
    return heading, wind, stw


def test_sample_playback_end_to_end(n2k_server):
    heading, wind, stw = _n2k_values(n2k_server.sample_file())
    source = SignalKSource(n2k_server.url)
    with Collector(source) as c:
        assert c.wait(lambda: all(len(c.of(k)) >= 3 for k in
                                  (HeadingReading, WindReading, SpeedReading))), \
            f'too few readings: {source.stats}'
        assert source.stats.connected
    # Aava's compass sends a true heading; every value read is one the recording holds.
    for r in c.of(HeadingReading):
        assert r.true_north and round(r.heading, 4) in heading
    for r in c.of(WindReading):
        assert (round(r.awa, 4), round(r.aws, 2)) in wind
    for r in c.of(SpeedReading):
        assert round(r.stw, 2) in stw
    # Plausible for a 34-footer: 1.5-4.5 m/s through the water, 4-10 m/s of apparent wind.
    assert all(1.0 < r.stw < 5.0 for r in c.of(SpeedReading))
    assert all(3.0 < r.aws < 12.0 for r in c.of(WindReading))
    stats = source.stats
    assert stats.parse_errors == 0 and stats.reconnects == 0 and stats.last_error == ''
    assert stats.readings >= len(c.readings) and set(stats.last_seen) >= {'heading', 'wind',
                                                                           'speed'}
    assert all(abs(r.stamp - time.time()) < 60 for r in c.readings)  # receive time


def test_nmea0183_sample_playback(tmp_path_factory):
    server = _server(tmp_path_factory, sample='nmea0183')
    try:
        # plaka.log: $IIMWV,338,R,13.41,N,A (relative: apparent) and $IIVHW,...,06.11,N.
        text = server.sample_file().read_text(errors='replace').splitlines()
        mwv = {(round(math.radians(math.remainder(float(f[1]), 360)), 3),
                round(float(f[3]) * KNOT, 2))
               for f in (s.split('*')[0].split(',') for s in text if s.startswith('$IIMWV'))
               if f[2] == 'R' and f[4] == 'N' and f[5] == 'A'}
        vhw = {round(float(f[5]) * KNOT, 2) for f in (s.split(',') for s in text
                                                        if s.startswith('$IIVHW')) if f[5]}
        source = SignalKSource(server.url)
        with Collector(source) as c:
            assert c.wait(lambda: len(c.of(WindReading)) >= 3 and len(c.of(SpeedReading))
                          >= 3), f'too few readings: {source.stats}'
        for r in c.of(WindReading):
            assert (round(r.awa, 3), round(r.aws, 2)) in mwv
            assert -math.pi < r.awa <= math.pi
        for r in c.of(SpeedReading):
            assert round(r.stw, 2) in vhw
        assert c.of(HeadingReading) == []  # its HDT and HDM sentences are all empty
    finally:
        server.close()


def test_sim_deltas_through_the_real_server(n2k_server):
    """The sim's encoder written to the server (as a sensor would), read back by the
    source: the paths the recordings lack (attitude, rate of turn, rudder) end to end."""
    source = SignalKSource(n2k_server.url)
    with Collector(source) as c, SignalKFeed(n2k_server.url) as feed:
        assert c.wait(lambda: source.stats.connected)
        time.sleep(0.5)  # the subscription is in
        for k in range(5):
            batch = [ImuSample(k, roll=0.1 * k, pitch=0.02, roll_rate=0.0, pitch_rate=0.0,
                               yaw_rate_z=0.01 * k, accel_x=0.0, accel_y=0.0, accel_z=9.8),
                     RudderSample(k, 0.1 * k)]
            feed.send(samples_to_delta(batch, epoch=time.time()))
        assert c.wait(lambda: len(c.of(RudderReading)) >= 5), source.stats
    assert [r.angle for r in c.of(RudderReading)] == pytest.approx(
        [0.1 * k * RUDDER_MAX_RAD for k in range(5)])
    assert [x for r in c.of(AttitudeReading) for x in (r.roll, r.pitch)] == pytest.approx(
        [x for k in range(5) for x in (0.1 * k, 0.02)])
    assert [r.rate for r in c.of(TurnRateReading)] == pytest.approx(
        [-0.01 * k for k in range(5)])


def test_simulator_through_the_server_to_the_source(n2k_server):
    """The demo-style chain: the simulator sailing (signalk_out's command line) -> the real
    server -> the source, beside the server's own N2K playback."""
    from autopilot_ros.sim.signalk_out import main

    source = SignalKSource(n2k_server.url, heading='magnetic')  # the recording's is true
    with Collector(source) as c:
        assert c.wait(lambda: source.stats.connected)
        time.sleep(0.5)
        assert main(['--url', n2k_server.url, '--scenario', 'beam_reach', '--duration', '4',
                     '--real-time-factor', '8']) == 0
        assert c.wait(lambda: len([r for r in c.of(HeadingReading) if not r.true_north])
                      >= 20)
    assert all(not r.true_north for r in c.of(HeadingReading))
    sim_headings = [r.heading for r in c.of(HeadingReading)]
    assert 0.0 <= min(sim_headings) and max(sim_headings) < 2 * math.pi
    assert len(c.of(AttitudeReading)) >= 20 and len(c.of(RudderReading)) >= 20
    assert all(abs(r.roll) < 0.6 for r in c.of(AttitudeReading))  # heeled, not capsized
    assert source.stats.parse_errors == 0


def test_token_accepted_and_refused(tmp_path_factory):
    server = _server(tmp_path_factory, sample='n2k', security=True)
    try:
        good = SignalKSource(server.url, server.token)
        with Collector(good) as c:
            assert c.wait(lambda: len(c.of(HeadingReading)) >= 1), good.stats
        assert good.stats.auth_errors == 0

        fast = {'backoff_initial': 0.1, 'backoff_cap': 0.5}
        anonymous = SignalKSource(server.url, **fast)
        with Collector(anonymous) as c:
            assert c.wait(lambda: anonymous.stats.auth_errors >= 2), anonymous.stats
        assert c.readings == [] and not anonymous.stats.connected
        assert 'requires an access token' in anonymous.stats.last_error
        assert anonymous.stats.reconnects >= 1

        forged = SignalKSource(server.url, server.token[:-4] + 'AAAA', **fast)
        with Collector(forged) as c:
            assert c.wait(lambda: forged.stats.auth_errors >= 2), forged.stats
        assert c.readings == []
        assert 'refused the access token (HTTP 401)' in forged.stats.last_error
    finally:
        server.close()


@pytest.mark.parametrize('tls', ['rsa2048', 'server'])
def test_tls_with_a_pinned_certificate(tmp_path_factory, tls):
    """wss: a self-signed certificate (CN localhost) given as ca_file is trusted (pinned);
    none given, it is refused with a named error. signalk-server's own certificate has a
    1024-bit key that OpenSSL 3 refuses even pinned: a named error too, never silence."""
    server = _server(tmp_path_factory, sample='n2k', tls=tls)
    try:
        assert server.url.startswith('wss://') and server.certificate.is_file()
        fast = {'backoff_initial': 0.1, 'backoff_cap': 0.2}
        pinned = SignalKSource(server.url, ca_file=str(server.certificate), **fast)
        with Collector(pinned) as c:
            if tls == 'rsa2048':
                assert c.wait(lambda: len(c.of(HeadingReading)) >= 1), pinned.stats
            else:
                assert c.wait(lambda: pinned.stats.reconnects >= 2), pinned.stats
        if tls == 'server':
            assert c.readings == []
            assert 'key too weak' in pinned.stats.last_error
        untrusted = SignalKSource(server.url, **fast)
        with Collector(untrusted) as c:
            assert c.wait(lambda: untrusted.stats.reconnects >= 2), untrusted.stats
        assert c.readings == []
        assert 'TLS certificate of the server is not trusted' in untrusted.stats.last_error
    finally:
        server.close()
    with pytest.raises(ValueError, match="ca_file '/nonexistent.pem'"):
        SignalKSource(server.url, ca_file='/nonexistent.pem')


def test_server_killed_and_restarted_the_source_reconnects(tmp_path_factory):
    server = _server(tmp_path_factory, sample='n2k')
    try:
        source = SignalKSource(server.url, open_timeout=1.0, hello_timeout=1.0,
                               backoff_initial=0.2, backoff_cap=1.0)
        with Collector(source) as c:
            assert c.wait(lambda: len(c.of(SpeedReading)) >= 2), source.stats
            server.kill()
            assert c.wait(lambda: source.stats.reconnects >= 2), source.stats
            assert not source.stats.connected and source.stats.last_error
            before = len(c.readings)
            server.start()
            assert c.wait(lambda: len(c.readings) > before + 2, timeout=60), source.stats
            assert source.stats.connected
    finally:
        server.close()


def test_a_hung_server_is_found_by_the_heartbeat(n2k_server):
    """SIGSTOP: the server neither answers nor closes; the pings find it, SIGCONT heals."""
    import os
    import signal

    source = SignalKSource(n2k_server.url, ping_interval=0.5, ping_timeout=0.5,
                           open_timeout=1.0, backoff_initial=0.1, backoff_cap=0.5)
    with Collector(source) as c:
        assert c.wait(lambda: len(c.readings) >= 2), source.stats
        os.killpg(n2k_server.process.pid, signal.SIGSTOP)
        try:
            assert c.wait(lambda: 'no answer to the heartbeat within 0.5 s' in
                          source.stats.last_error, timeout=20), source.stats
            # (the retry then times out on the opening handshake, and says so)
            assert c.wait(lambda: 'no WebSocket handshake' in source.stats.last_error,
                          timeout=20), source.stats
        finally:
            os.killpg(n2k_server.process.pid, signal.SIGCONT)
        before = len(c.readings)
        assert c.wait(lambda: len(c.readings) > before + 2, timeout=60), source.stats
    assert source.stats.connected is False  # stopped by the test, not lost


# -- servers that do not behave --------------------------------------------------------------
@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_server_that_accepts_and_never_answers(silent_listener):
    port, accepted = silent_listener
    source = SignalKSource(f'ws://127.0.0.1:{port}', open_timeout=0.3, backoff_initial=0.05,
                           backoff_cap=0.1)
    with Collector(source) as c:
        assert c.wait(lambda: source.stats.reconnects >= 3, timeout=20), source.stats
    assert c.readings == [] and len(accepted) >= 3
    assert 'no WebSocket handshake within 0.3 s' in source.stats.last_error
    assert not source.stats.connected


def test_a_websocket_that_never_says_hello_and_one_that_hangs_up():
    from websockets.sync.server import serve

    def mute(ws):
        time.sleep(2.0)

    def hang_up(ws):
        ws.send(json.dumps({'name': 'x', 'version': '1', 'self': SELF}))
        ws.close()

    for handler, expected in ((mute, 'no hello within 0.3 s'),
                              (hang_up, 'closed the stream')):
        with serve(handler, '127.0.0.1', 0) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            port = server.socket.getsockname()[1]
            source = SignalKSource(f'127.0.0.1:{port}', hello_timeout=0.3,
                                   backoff_initial=0.05, backoff_cap=0.1)
            with Collector(source) as c:
                assert c.wait(lambda c=c: c.source.stats.reconnects >= 2, timeout=20), \
                    source.stats
            assert c.readings == [] and expected in source.stats.last_error
            server.shutdown()
            thread.join()


def test_a_refused_port_is_counted_and_retried():
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    source = SignalKSource(f'ws://127.0.0.1:{port}', backoff_initial=0.05, backoff_cap=0.1)
    with Collector(source) as c:
        assert c.wait(lambda: source.stats.reconnects >= 3), source.stats
    assert c.readings == [] and 'ConnectionRefusedError' in source.stats.last_error


def test_a_failing_consumer_does_not_end_the_source(n2k_server):
    calls = []

    def bad_emit(batch):
        calls.append(batch)
        raise RuntimeError('consumer bug')

    source = SignalKSource(n2k_server.url)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(bad_emit, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=15)
    assert len(calls) >= 3 and source.stats.reconnects == 0
    assert 'emit failed: RuntimeError: consumer bug' in source.stats.last_error


def test_the_simulators_writer_retries_until_the_server_is_up_and_never_blocks(
        tmp_path_factory):
    """sim_node's SignalKWriter: no server yet (deltas dropped and counted, retried), the
    server up (written and read back), the server killed and restarted (written again)."""
    from autopilot_ros.sim.signalk_out import SignalKWriter

    server = _server(tmp_path_factory, sample=None)
    server.kill()  # the port stays bound (socket activation) but nobody answers
    writer = SignalKWriter(server.url)
    writer.BACKOFF = (0.1, 0.5)
    try:
        delta = samples_to_delta([HeadingSample(0.0, 1.0)], epoch=time.time())
        started = time.monotonic()
        for _ in range(20):
            writer.send(delta)
        assert time.monotonic() - started < 0.5  # queued or dropped, never waited for
        assert writer.dropped == 20 and not writer.connected
        server.start()
        source = SignalKSource(server.url, backoff_initial=0.1, backoff_cap=0.5)
        with Collector(source) as c:
            for restart in (False, True):
                if restart:
                    server.kill()
                    server.start()
                deadline = time.monotonic() + 60
                before = len(c.of(HeadingReading))
                while len(c.of(HeadingReading)) < before + 5 and time.monotonic() < deadline:
                    writer.send(samples_to_delta([HeadingSample(0.0, 1.0)], epoch=time.time()))
                    time.sleep(0.05)
                assert len(c.of(HeadingReading)) >= before + 5, (restart, writer.last_error)
        assert writer.failures >= 1 and writer.sent >= 10
        assert all(r.heading == 1.0 for r in c.of(HeadingReading))
    finally:
        writer.close()
        server.close()
