"""The helm page's pure rules: the token, the keypad's signs, the tack, the page's JSON.

No ROS and no server (test_helm_server.py serves them over real sockets, test_helm_page.py
in a real browser against the node and the simulator).
"""

import json
import math

import pytest

from autopilot_ros.conventions import true_wind, wrap_pi
from autopilot_ros.helm import (
    MAX_MESSAGE_BYTES,
    MIN_TOKEN_LENGTH,
    TACK_MAX_TWA_DEG,
    Course,
    HelmState,
    Reading,
    Refused,
    TokenGate,
    Wind,
    check_token,
    degrees_in_mode,
    describe,
    nudge,
    parse_message,
    status_fields,
    tack,
    to_json,
    token_problem,
)

TOKEN = 'harbour-0142'


# -- the token ----------------------------------------------------------------------------
def test_only_the_configured_token_unlocks_and_an_unusable_one_unlocks_nothing():
    assert check_token(TOKEN, TOKEN)
    for wrong in ('harbour-0143', TOKEN + ' ', TOKEN[:-1], '', None, 1234, [TOKEN],
                  TOKEN.upper()):
        assert not check_token(TOKEN, wrong), wrong
    # No token (view only), or one too short to resist guessing: nothing unlocks, not even
    # the same string.
    assert not check_token('', '')
    short = 'x' * (MIN_TOKEN_LENGTH - 1)
    assert not check_token(short, short)
    assert 'view only' in token_problem('')
    assert f'at least {MIN_TOKEN_LENGTH}' in token_problem(short)
    assert token_problem(' ' + TOKEN) and token_problem(TOKEN + '\n')
    assert token_problem(TOKEN) is None
    assert check_token('kåre-ærø-ß-2026', 'kåre-ærø-ß-2026')  # any UTF-8


def test_the_token_is_compared_in_constant_time():
    """hmac.compare_digest, so the answer's timing does not leak how much was right."""
    import inspect

    from autopilot_ros import helm
    source = inspect.getsource(helm.check_token)
    assert 'hmac.compare_digest' in source and '==' not in source


def test_repeated_misses_lock_out_that_address_only_and_the_lock_expires():
    gate = TokenGate(TOKEN, max_misses=3, lockout_s=60.0)
    assert gate.enabled
    assert gate.check('10.0.0.9', 'guess1', 0.0) == (False, 'wrong token')
    assert gate.check('10.0.0.9', 'guess2', 1.0) == (False, 'wrong token')
    ok, why = gate.check('10.0.0.9', 'guess3', 2.0)
    assert not ok and 'locked for 60 s' in why
    ok, why = gate.check('10.0.0.9', TOKEN, 3.0)  # the right token, but locked out
    assert not ok and 'too many wrong tokens' in why
    assert gate.check('10.0.0.7', TOKEN, 3.0) == (True, '')  # the skipper's phone is not
    assert gate.check('10.0.0.9', TOKEN, 62.5) == (True, '')  # the lock expired
    # Misses further apart than the lockout window never add up to a lockout.
    slow = TokenGate(TOKEN, max_misses=3, lockout_s=10.0)
    for k in range(10):
        assert slow.check('p', 'guess', 11.0 * k) == (False, 'wrong token')
    # A success forgets the misses.
    gate = TokenGate(TOKEN, max_misses=3)
    gate.check('p', 'a', 0.0)
    gate.check('p', 'b', 0.0)
    assert gate.check('p', TOKEN, 0.0)[0]
    assert gate.check('p', 'c', 0.0) == (False, 'wrong token')


def test_without_a_usable_token_every_attempt_says_why():
    gate = TokenGate('')
    assert not gate.enabled
    assert gate.check('p', '', 0.0) == (False, 'no access token configured: the page is view only')


# -- the keypad ---------------------------------------------------------------------------
def test_plus_turns_to_starboard_in_every_mode():
    """Compass: the heading grows. Wind modes: the wind angle shrinks (TWA = from - heading)."""
    assert math.degrees(nudge(Course('compass', math.radians(90)), 10).target) \
        == pytest.approx(100)
    assert math.degrees(nudge(Course('compass', math.radians(355)), 10).target) \
        == pytest.approx(5)  # through north
    assert math.degrees(nudge(Course('compass', math.radians(3)), -10).target) \
        == pytest.approx(353)
    # Wind from starboard at 45: 10 deg to starboard brings it to 35 (closer to the bow).
    assert math.degrees(nudge(Course('wind_twa', math.radians(45)), 10).target) \
        == pytest.approx(35)
    # Wind from port at -45: to starboard takes it aft, to -55.
    assert math.degrees(nudge(Course('wind_awa', math.radians(-45)), 10).target) \
        == pytest.approx(-55)
    # Dead downwind (180): to starboard puts the wind on the starboard quarter (179), to
    # port on the port quarter (-179).
    assert math.degrees(nudge(Course('wind_twa', math.pi), 1).target) == pytest.approx(179)
    assert math.degrees(nudge(Course('wind_twa', math.pi), -1).target) == pytest.approx(-179)
    for mode in ('compass', 'wind_twa', 'wind_awa'):
        course = Course(mode, 0.7)
        assert nudge(nudge(course, 10), -10).mode == mode
        assert wrap_pi(nudge(nudge(course, 10), -10).target - 0.7) == pytest.approx(0.0)


def test_a_wind_nudge_turns_the_boat_the_way_the_button_says():
    """Through the convention itself: the target heading a TWA target resolves to."""
    from autopilot_ros.conventions import wind_target_heading
    heading, twa = math.radians(100), math.radians(50)
    before = wind_target_heading('wind_twa', twa, heading, twa, 8.0, 3.0)
    after = wind_target_heading('wind_twa', nudge(Course('wind_twa', twa), 10).target,
                                heading, twa, 8.0, 3.0)
    assert math.degrees(wrap_pi(after - before)) == pytest.approx(10)  # 10 deg to starboard


def test_a_nudge_is_refused_in_standby_or_for_an_odd_amount():
    with pytest.raises(Refused, match='engage first'):
        nudge(Course('standby', 0.0), 1)
    for amount in (2, 90, 0, float('nan'), 1.5):
        with pytest.raises(Refused, match='one of -10, -1, \\+1, \\+10'):
            nudge(Course('compass', 1.0), amount)


# -- the tack -----------------------------------------------------------------------------
def test_a_compass_tack_mirrors_the_course_about_the_true_wind():
    # Close-hauled on starboard tack: course 0, apparent wind 30 deg from starboard at
    # 10 m/s, 3 m/s through the water. The true wind is further aft than the apparent.
    wind = Wind(math.radians(30), 10.0, 3.0)
    twa, _ = true_wind(wind.awa, wind.aws, wind.stw)
    plan = tack(Course('compass', 0.0), 0.0, wind)
    assert plan.twa_deg == pytest.approx(math.degrees(twa))
    assert plan.twa_deg > 30.0  # more than the apparent angle
    assert plan.turn_deg == pytest.approx(2 * math.degrees(twa))  # to starboard
    assert degrees_in_mode(plan.course) == pytest.approx(2 * math.degrees(twa))
    # On the new course the true wind is at the same angle on the other side.
    wind_from = 0.0 + twa
    assert math.degrees(wrap_pi(wind_from - plan.course.target)) == pytest.approx(
        -math.degrees(twa))
    # And tacking back (the wind now from port, seen from the new course) returns.
    awa_back, aws_back = wrap_pi(-wind.awa), wind.aws
    back = tack(plan.course, plan.course.target, Wind(awa_back, aws_back, wind.stw))
    assert back.turn_deg == pytest.approx(-plan.turn_deg)  # to port
    assert math.degrees(wrap_pi(back.course.target)) == pytest.approx(0.0, abs=1e-9)


def test_a_compass_tack_mirrors_the_target_not_where_the_boat_points_this_second():
    """Off course by a wave, the tack still mirrors the target: the boat heads 10 deg
    to starboard of the target 90, the true wind comes from 90+10+40 = 140."""
    wind = Wind(math.radians(40), 8.0, None)  # no log: TWA taken as AWA
    plan = tack(Course('compass', math.radians(90)), math.radians(100), wind)
    assert plan.twa_deg == pytest.approx(50.0)  # at the target: 140 - 90
    assert degrees_in_mode(plan.course) == pytest.approx(190.0)


def test_a_wind_mode_tack_changes_the_side_of_the_wind():
    wind = Wind(math.radians(35), 9.0, 3.0)
    plan = tack(Course('wind_twa', math.radians(45)), 1.0, wind)
    assert plan.course == Course('wind_twa', pytest.approx(math.radians(-45)))
    assert plan.turn_deg == pytest.approx(90.0)
    plan = tack(Course('wind_awa', math.radians(-30)), 1.0, wind)
    assert plan.course.mode == 'wind_awa'
    assert math.degrees(plan.course.target) == pytest.approx(30.0)
    assert plan.turn_deg < -60.0  # to port, by twice the true angle (wider than 30)


def test_a_tack_that_would_be_a_gybe_or_has_no_wind_is_refused():
    beam = Wind(math.radians(100), 8.0, 0.0)
    with pytest.raises(Refused, match='would be a gybe'):
        tack(Course('compass', 0.0), 0.0, beam)
    with pytest.raises(Refused, match='would be a gybe'):
        tack(Course('wind_twa', math.radians(TACK_MAX_TWA_DEG + 1)), 0.0, beam)
    tack(Course('wind_twa', math.radians(TACK_MAX_TWA_DEG - 1)), 0.0, beam)  # allowed
    with pytest.raises(Refused, match='no wind'):
        tack(Course('compass', 0.0), 0.0, None)
    with pytest.raises(Refused, match='no wind'):
        tack(Course('compass', 0.0), 0.0, Wind(float('nan'), 5.0, None))
    with pytest.raises(Refused, match='no heading'):
        tack(Course('compass', 0.0), None, Wind(0.5, 5.0, None))
    with pytest.raises(Refused, match='engage first'):
        tack(Course('standby', 0.0), 0.0, Wind(0.5, 5.0, None))
    with pytest.raises(Refused, match='head to wind'):
        tack(Course('compass', 0.0), 0.0, Wind(0.001, 5.0, None))


def test_courses_read_as_a_sailor_says_them():
    assert describe(Course('compass', math.radians(5))) == 'compass 005.0'
    assert describe(Course('wind_twa', math.radians(-45))) == 'wind_twa 45 port'
    assert describe(Course('wind_awa', math.radians(30))) == 'wind_awa 30 stbd'
    assert describe(Course('standby', 0.0)) == 'standby'


# -- the page's messages ------------------------------------------------------------------
def test_commands_from_the_page_are_parsed_strictly():
    m = parse_message(json.dumps({'type': 'command', 'action': 'nudge', 'degrees': -10,
                                  'token': TOKEN, 'id': 7}))
    assert (m.kind, m.action, m.degrees, m.token, m.id) == ('command', 'nudge', -10.0, TOKEN, 7)
    assert parse_message('{"type": "auth", "token": "abc"}').kind == 'auth'
    assert parse_message('{"type": "command", "action": "tack"}').token is None
    bad = {
        'not JSON': 'nudge +10',
        'not a JSON object': '[1, 2]',
        "type must be 'auth' or 'command'": '{"type": "shell"}',
        'action must be one of': '{"type": "command", "action": "gybe"}',
        'a nudge is one of': '{"type": "command", "action": "nudge", "degrees": 45}',
        'id must be an integer': '{"type": "auth", "id": "x"}',
    }
    for why, raw in bad.items():
        with pytest.raises(Refused, match=why):
            parse_message(raw)
    for degrees in ('true', '"10"', 'null', '1e400'):
        with pytest.raises(Refused, match='a nudge is one of'):
            parse_message('{"type": "command", "action": "nudge", "degrees": ' + degrees + '}')
    with pytest.raises(Refused, match=f'over {MAX_MESSAGE_BYTES} bytes'):
        parse_message(json.dumps({'type': 'auth', 'token': 'x' * MAX_MESSAGE_BYTES}))
    with pytest.raises(Refused, match='not JSON'):
        parse_message(b'\xff\xfe')


def _status(**over):
    fields = status_fields('compass', True, math.radians(95), math.radians(95),
                           math.radians(-2.5), 0.25, 0.3, 'pid', '', '', ['speed'])
    fields.update(over)
    return fields


def test_the_page_json_carries_degrees_and_null_for_unknown_never_nan():
    state = HelmState(history_s=10.0, sample_period=0.2)
    state.status = Reading(_status(heading_error=float('nan'), raw_command=float('nan')), 10.0)
    state.heading = Reading(math.radians(97.5), 10.0)
    state.wind = Reading((math.radians(-40), 7.0), 10.0)
    state.rudder = Reading(0.2, 10.0)
    snap = state.snapshot(10.5, 1000.0)
    text = to_json(snap)
    assert 'NaN' not in text
    page = json.loads(text)
    assert page['mode'] == 'compass' and page['engaged'] and page['pilot_alive']
    assert page['target_deg'] == pytest.approx(95.0)
    assert page['heading_deg'] == pytest.approx(97.5)
    assert page['heading_error_deg'] is None and page['raw_command'] is None
    assert page['awa_deg'] == pytest.approx(-40.0) and page['aws_ms'] == pytest.approx(7.0)
    assert page['stw_ms'] is None  # never heard
    assert page['policy'] == 'pid' and page['stale_inputs'] == ['speed']
    assert page['rudder'] == pytest.approx(0.2) and page['command'] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        to_json({'x': float('nan')})


def test_old_readings_show_as_unknown_and_a_silent_pilot_as_not_alive():
    state = HelmState()
    assert state.snapshot(0.0, 0.0)['pilot_alive'] is False  # nothing heard yet
    state.status = Reading(_status(), 0.0)
    state.heading = Reading(1.0, 0.0)
    state.wind = Reading((0.5, 5.0), 0.0)
    snap = state.snapshot(5.0, 5.0)
    assert not snap['pilot_alive'] and snap['status_age_s'] == 5.0
    assert snap['heading_deg'] is None and snap['awa_deg'] is None
    assert state.wind_now(5.0) is None and state.heading_now(5.0) is None
    # A compass target near 360 stays in [0, 360) on the page.
    state.status = Reading(_status(target=2 * math.pi - 1e-9), 5.0)
    assert 0.0 <= state.snapshot(5.0, 5.0)['target_deg'] < 360.0


def test_the_rolling_history_keeps_its_span_and_breaks_where_the_pilot_was_off():
    state = HelmState(history_s=2.0, sample_period=0.2)
    for k in range(30):
        engaged = k < 20
        state.status = Reading(_status(engaged=engaged, heading_error=math.radians(k)), k * 0.2)
        state.sample(k * 0.2, 100.0 + k * 0.2)
    history = state.history_message()
    assert history['span_s'] == 2.0
    points = history['points']
    assert len(points) == 10  # 2 s at 5 Hz
    assert points[-1][0] == pytest.approx(105.8)
    assert all(p[1] is None for p in points)  # the last ten were in standby: no error line
    state.status = Reading(_status(), 6.0)
    state.sample(6.0, 106.0)
    assert state.history_message()['points'][-1][1] == pytest.approx(-2.5)
    json.loads(to_json(state.history_message()))


def test_the_launch_gives_the_helm_its_address_port_and_token_file_only():
    from autopilot_ros.launch_config import HELM_PORT, helm_parameters
    assert helm_parameters('', str(HELM_PORT), '') == {'address': '127.0.0.1', 'port': 8080,
                                                       'foxglove_port': 0}
    assert helm_parameters('', '8080', '', '8765')['foxglove_port'] == 8765
    params = helm_parameters('192.168.4.1', '8000', '~/.helm_token')
    assert params['address'] == '192.168.4.1' and params['port'] == 8000
    assert params['access_token_file'].endswith('/.helm_token')
    assert not params['access_token_file'].startswith('~')
    assert 'access_token' not in params  # never the token itself on a command line
    for port in ('http', '0', '70000'):
        with pytest.raises(ValueError, match=f'helm_port:={port} is not a port number'):
            helm_parameters('', port, '')
    with pytest.raises(ValueError, match='helm_foxglove_port:=-1 is not a port number'):
        helm_parameters('', '8080', '', '-1')


def test_the_state_schema_names_every_field_the_page_gets():
    from autopilot_ros.helm import STATE_SCHEMA
    snap = HelmState().snapshot(0.0, 0.0)
    assert set(snap) - {'type'} == set(STATE_SCHEMA['properties'])
