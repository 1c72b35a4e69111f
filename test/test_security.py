"""The SROS2 policy against the package's own names: who may steer (docs/design.md).

No DDS: the policies (security/*.policy.xml) are read with xml.etree and resolved to fully
qualified names as sros2's permissions template does (relative to the profile's ns, `~` to
the node's own), then compared with what the nodes really create: the topic and service
names in node.py, sim_node.py and instruments_node.py (read from their source, so a topic
renamed there breaks this test until the policy follows), the tables they derive from
(inputs.INPUTS, status.OUTPUTS, record.package_topics) and what rclpy adds to every node.
The test marked `dds` makes each node for real and compares the endpoints DDS sees (every
publisher, subscription, service and client, the ones rcl adds included) with its profile,
both ways. Whether DDS enforces the policy is `scripts/sros2-setup --check`, on a full ROS
install only.
"""

import ast
import fnmatch
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from autopilot_ros.inputs import INPUT_BY_NAME, INPUTS
from autopilot_ros.launch_config import (
    AUTOPILOT_ENCLAVE,
    RECORDER_ENCLAVE,
    SENSORS_ENCLAVE,
    SIM_ENCLAVE,
    enclave_arguments,
    security_problem,
)
from autopilot_ros.record import package_topics
from autopilot_ros.status import OUTPUTS

REPO = pathlib.Path(__file__).resolve().parents[1]
SECURITY = REPO / 'security'
POLICY = SECURITY / 'autopilot_ros.policy.xml'  # the boat
BENCH = SECURITY / 'bench.policy.xml'  # the simulator: never in the boat's keystore
SCRIPT = REPO / 'scripts' / 'sros2-setup'
SENSORS, RECORDER = SENSORS_ENCLAVE, RECORDER_ENCLAVE
RUDDER, HELM = '/autopilot_ros/rudder', '/autopilot_ros/helm'

# The permission each ROS construct needs (sros2's templates/dds/permissions.xsl).
CALLS = {'create_publisher': 'publish', 'create_subscription': 'subscribe',
         'create_service': 'reply', 'create_client': 'request'}
# What rclpy (Jazzy and newer) adds to every node, in the node's own names.
IMPLICIT = {
    'publish': {'/rosout', '/parameter_events'},
    'subscribe': set(),
    'reply': {f'~/{s}' for s in ('describe_parameters', 'get_parameter_types',
                                 'get_parameters', 'get_type_description', 'list_parameters',
                                 'set_parameters', 'set_parameters_atomically')},
    'request': set(),
}
RULES = {'topics': ('topic', {'publish', 'subscribe'}),
         'services': ('service', {'reply', 'request'}),
         'actions': ('action', {'call', 'execute'})}
XML_BASE = '{http://www.w3.org/XML/1998/namespace}base'


def resolve(name: str, ns: str, node: str) -> str:
    """A policy name as permissions.xsl resolves it: absolute, `~` the node's, else in ns."""
    if name.startswith('/'):
        return name
    ns = ns if ns.endswith('/') else ns + '/'
    return ns + node + name[1:] if name.startswith('~') else ns + name


def profile_permissions(*paths: pathlib.Path) -> dict[tuple[str, str], dict[str, set[str]]]:
    """(enclave, node) -> permission -> the ALLOWed fully qualified names of that profile."""
    out: dict[tuple[str, str], dict[str, set[str]]] = {}
    for path in paths:
        for enclave in ET.parse(path).getroot().iter('enclave'):
            for profile in enclave.iter('profile'):
                key = (enclave.get('path'), profile.get('node'))
                assert key not in out, f'profile {key} twice'
                perms = out[key] = {k: set() for k in IMPLICIT}
                for rule in profile:
                    child, allowed = RULES[rule.tag]
                    for permission in allowed & set(rule.attrib):
                        assert rule.get(permission) == 'ALLOW', (
                            f'{path.name}: DENY rules are not what these checks read')
                        perms.setdefault(permission, set()).update(
                            resolve(e.text.strip(), profile.get('ns'), profile.get('node'))
                            for e in rule.iter(child))
    return out


def permissions(*paths: pathlib.Path) -> dict[str, dict[str, set[str]]]:
    """enclave -> permission -> the ALLOWed names of all its profiles: an enclave's
    participants get the union (sros2 writes one permissions grant per enclave)."""
    out: dict[str, dict[str, set[str]]] = {}
    for path in paths:
        for enclave in ET.parse(path).getroot().iter('enclave'):
            assert enclave.get('path') not in out, f'enclave {enclave.get("path")} twice'
            out[enclave.get('path')] = {k: set() for k in IMPLICIT}
        for (enclave, _), perms in profile_permissions(path).items():
            for permission, names in perms.items():
                out[enclave].setdefault(permission, set()).update(names)
    return out


def allowed(perms: dict[str, set[str]], permission: str, name: str) -> bool:
    """DDS matches the permissions' names as fnmatch patterns."""
    return any(fnmatch.fnmatchcase(name, p) for p in perms.get(permission, ()))


def who(all_perms, permission: str, name: str) -> set[str]:
    return {e for e, perms in all_perms.items() if allowed(perms, permission, name)}


def graph_of(source: pathlib.Path, node: str) -> dict[str, set[str]]:
    """permission -> the names a node module creates (fully qualified in ns '/').

    A name is a string literal, `x.name` for `x` iterating over inputs.INPUTS, or `x` for
    the names of inputs.INPUT_BY_NAME (`for x in INPUT_BY_NAME`, `for x, spec in
    INPUT_BY_NAME.items()`); anything else comes back as '?<expression>' for a test to say
    what to do about it.
    """
    tree = ast.parse(source.read_text())
    loops = [loop for loop in ast.walk(tree) if isinstance(loop, ast.For | ast.comprehension)]
    over_inputs = {loop.target.id for loop in loops
                   if isinstance(loop.target, ast.Name)
                   and isinstance(loop.iter, ast.Name) and loop.iter.id == 'INPUTS'}
    input_names = set()
    for loop in loops:
        it, target = loop.iter, loop.target
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) \
                and it.func.attr in ('items', 'keys') and not it.args:
            it = it.func.value
            target = target.elts[0] if isinstance(target, ast.Tuple) else target
        if isinstance(it, ast.Name) and it.id == 'INPUT_BY_NAME' \
                and isinstance(target, ast.Name):
            input_names.add(target.id)
    out = {k: set(v) for k, v in IMPLICIT.items()}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr in CALLS):
            continue
        arg = call.args[1] if len(call.args) > 1 else call.keywords[0].value
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names = {arg.value}
        elif (isinstance(arg, ast.Attribute) and arg.attr == 'name'
              and isinstance(arg.value, ast.Name) and arg.value.id in over_inputs) \
                or (isinstance(arg, ast.Name) and arg.id in input_names):
            names = {spec.name for spec in INPUTS}
        else:
            names = {'?' + ast.unparse(arg)}
        out[CALLS[call.func.attr]] |= names
    return {k: {n if n.startswith('?') else resolve(n, '/', node) for n in v}
            for k, v in out.items()}


NODE_GRAPH = graph_of(REPO / 'autopilot_ros' / 'node.py', 'autopilot')
INSTRUMENTS_GRAPH = graph_of(REPO / 'autopilot_ros' / 'instruments_node.py', 'instruments')
ALL = permissions(POLICY, BENCH)
BOAT = permissions(POLICY)
PROFILES = profile_permissions(POLICY, BENCH)


# -- the files are sros2 policies -----------------------------------------------------------
@pytest.mark.parametrize('path', [POLICY, BENCH], ids=lambda p: p.name)
def test_each_policy_has_the_structure_of_sros2s_schema(path):
    """The rules of sros2's policy.xsd (format 0.2.0), as far as these files use them."""
    root = ET.parse(path).getroot()
    assert root.tag == 'policy' and root.get('version') == '0.2.0'
    assert [c.tag for c in root] == ['enclaves']
    enclaves = list(root[0])
    assert enclaves and all(e.tag == 'enclave' and e.get('path') for e in enclaves)
    for enclave in enclaves:
        assert enclave.get('path').startswith('/autopilot_ros/')
        assert list(enclave) and all(c.tag == 'profiles' for c in enclave)
        for profiles in enclave:
            tags = [c.tag for c in profiles]
            assert tags and set(tags) <= {'profile', 'metadata'}
            assert 'metadata' not in tags or tags.index('metadata') == len(tags) - 1
            for profile in profiles.iter('profile'):
                assert set(profile.attrib) <= {'ns', 'node', XML_BASE}
                # ns '/': the launch file's default namespace, which these checks assume.
                assert profile.get('ns') == '/' and profile.get('node')
                for rule in profile:
                    assert rule.tag in RULES, f'{rule.tag} is no sros2 rule'
                    child, qualifiers = RULES[rule.tag]
                    assert set(rule.attrib) - {XML_BASE} <= qualifiers
                    assert set(rule.attrib) & qualifiers, 'a rule that allows nothing'
                    assert all(v in ('ALLOW', 'DENY') for k, v in rule.attrib.items()
                               if k != XML_BASE)
                    items = list(rule)
                    assert items and all(i.tag == child and (i.text or '').strip()
                                         for i in items)


@pytest.mark.parametrize('path', [POLICY, BENCH], ids=lambda p: p.name)
def test_each_policy_is_valid_for_sros2_itself(path):
    """sros2's own loader (XInclude, then its policy.xsd), where a ROS install has it."""
    if importlib.util.find_spec('sros2') is None:
        pytest.skip('sros2 is not installed here (a full ROS install: apt install '
                    'ros-$ROS_DISTRO-sros2); its schema is not shipped elsewhere')
    from sros2.policy import load_policy
    load_policy(path)


def test_the_enclaves_are_the_roles_on_the_boat_and_the_bench():
    assert set(BOAT) == {AUTOPILOT_ENCLAVE, SENSORS, RUDDER, HELM, RECORDER}
    assert set(ALL) == set(BOAT) | {SIM_ENCLAVE}
    nodes = {e.get('path'): {p.get('node') for p in e.iter('profile')}
             for path in (POLICY, BENCH) for e in ET.parse(path).getroot().iter('enclave')}
    assert nodes[AUTOPILOT_ENCLAVE] == {'autopilot'}  # AutopilotNode's name
    assert nodes[SIM_ENCLAVE] == {'boat_sim'}  # SimNode's name and the launch file's
    # Any sensor driver, and instruments_node by the name it and the launch file give it.
    assert nodes[SENSORS] == {'sensors', 'instruments'}
    assert nodes[RECORDER] == {'autopilot_record'}  # RecorderNode's name
    for source, name in (('instruments_node.py', 'instruments'),
                         ('record_node.py', 'autopilot_record')):
        assert f"super().__init__('{name}'" in (REPO / 'autopilot_ros' / source).read_text()


# -- who may steer ----------------------------------------------------------------------------
def test_every_sensor_input_is_read_by_the_autopilot_and_published_by_the_drivers():
    for spec in INPUTS:
        topic = resolve(spec.name, '/', 'autopilot')
        assert allowed(ALL[AUTOPILOT_ENCLAVE], 'subscribe', topic), topic
        assert allowed(ALL[SENSORS], 'publish', topic), topic
        assert allowed(ALL[SIM_ENCLAVE], 'publish', topic), topic
        # Read by the autopilot and the recorder, and by the helm for the helm page's
        # display (heading, wind, speed and the measured rudder; the IMU is not shown).
        assert {AUTOPILOT_ENCLAVE, RECORDER} <= who(ALL, 'subscribe', topic) <= {
            AUTOPILOT_ENCLAVE, HELM, RECORDER}, topic


def test_only_the_autopilot_publishes_its_outputs_and_rudder_command_above_all():
    command = resolve(next(o.name for o in OUTPUTS if o.msg_type.endswith('/RudderCommand')),
                      '/', 'autopilot')
    assert command == '/rudder_command'
    assert who(ALL, 'publish', command) == {AUTOPILOT_ENCLAVE}
    assert who(ALL, 'subscribe', command) == {RUDDER, SIM_ENCLAVE, RECORDER}
    for output in OUTPUTS:
        topic = resolve(output.name, '/', 'autopilot')
        assert who(ALL, 'publish', topic) == {AUTOPILOT_ENCLAVE}, topic


def test_only_the_helm_may_call_the_autopilots_services_parameters_included():
    served = NODE_GRAPH['reply']
    assert {'/autopilot/engage', '/autopilot/steer', '/autopilot/set_parameters',
            '/autopilot/set_parameters_atomically'} <= served
    for service in served:
        assert who(ALL, 'reply', service) == {AUTOPILOT_ENCLAVE}, service
        assert who(ALL, 'request', service) <= {HELM}, service
    for service in ('engage', 'steer', 'set_parameters', 'set_parameters_atomically',
                    'get_parameters', 'list_parameters', 'describe_parameters'):
        assert who(ALL, 'request', f'/autopilot/{service}') == {HELM}, service


def test_the_autopilot_may_do_what_its_node_does_and_nothing_more():
    """Both ways, so a topic or service renamed in node.py or the tables fails here."""
    unresolved = {n for names in NODE_GRAPH.values() for n in names if n.startswith('?')}
    assert not unresolved, (f'node.py names {unresolved}: a literal or an INPUTS row lets '
                            'this test (and the SROS2 policy) know the name')
    outputs = {resolve(o.name, '/', 'autopilot') for o in OUTPUTS}
    assert outputs <= NODE_GRAPH['publish']
    assert {'/diagnostics', '/autopilot/markers'} <= NODE_GRAPH['publish']
    expected = dict(NODE_GRAPH)
    expected['subscribe'] = NODE_GRAPH['subscribe'] | {'/clock'}  # with use_sim_time
    granted = ALL[AUTOPILOT_ENCLAVE]
    for permission, names in expected.items():
        assert granted.get(permission, set()) == names, permission


def test_the_drivers_and_the_helm_may_do_their_part_and_nothing_of_the_pilots():
    def own(node):  # what rclpy gives any node, in that node's names
        return {k: {resolve(n, '/', node) for n in v} for k, v in IMPLICIT.items()}
    inputs = {resolve(spec.name, '/', 'sensors') for spec in INPUTS}
    sensors = own('sensors')
    assert PROFILES[SENSORS, 'sensors'] == sensors | {'publish': sensors['publish'] | inputs}
    rudder = own('rudder_driver')
    angle = resolve(INPUT_BY_NAME['rudder_angle'].name, '/', 'rudder_driver')
    assert ALL[RUDDER] == rudder | {'publish': rudder['publish'] | {angle},
                                    'subscribe': {'/rudder_command'}}
    # The helm reads what the pilot reports and, for the helm page, what the instruments
    # say; it publishes nothing the pilot steers by.
    assert ALL[HELM]['subscribe'] == {'/autopilot/status', '/autopilot/markers',
                                      '/diagnostics', '/rosout', '/heading', '/wind',
                                      '/speed', '/rudder_angle'}
    assert ALL[HELM]['request'] <= NODE_GRAPH['reply']
    assert not ALL[HELM]['publish'] - {'/rosout', '/parameter_events'}
    # Its command-line nodes (_ros2cli_*) serve their own services only.
    for pattern in ALL[HELM]['reply']:
        assert pattern.startswith(('/helm/', '/_ros2cli_')), pattern


def test_the_helm_page_may_do_what_helm_node_does_in_the_helm_enclave():
    from autopilot_ros.launch_config import HELM_ENCLAVE
    assert HELM_ENCLAVE == HELM  # where the launch runs it with enclave:=
    graph = graph_of(REPO / 'autopilot_ros' / 'helm_node.py', 'helm')
    unresolved = {n for names in graph.values() for n in names if n.startswith('?')}
    assert not unresolved, f'helm_node.py names {unresolved}: use literals'
    assert graph['request'] == {'/autopilot/engage', '/autopilot/steer'}
    assert not graph['publish'] - {'/rosout', '/parameter_events'}
    for permission, names in graph.items():
        assert names <= ALL[HELM].get(permission, set()), permission


def test_the_simulator_may_do_what_sim_node_does_but_not_set_the_course():
    graph = graph_of(REPO / 'autopilot_ros' / 'sim_node.py', 'boat_sim')
    clients = graph.pop('request')
    assert len(clients) == 1 and 'set_parameters_atomically' in next(iter(clients))
    assert ALL[SIM_ENCLAVE]['request'] == set()
    # ... so sim_node must create that client only when it sets the course itself.
    tree = ast.parse((REPO / 'autopilot_ros' / 'sim_node.py').read_text())
    creating = [ast.unparse(a) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                and 'create_client' in ast.unparse(a.value)]
    assert len(creating) == 1 and "'engage_autopilot'" in creating[0], creating
    for permission, names in graph.items():
        assert ALL[SIM_ENCLAVE].get(permission, set()) == names, permission


def test_the_instruments_node_may_do_what_it_does_and_nothing_more():
    """Both ways, as for the autopilot: a topic instruments_node gains fails here."""
    unresolved = {n for names in INSTRUMENTS_GRAPH.values() for n in names if n.startswith('?')}
    assert not unresolved, (f'instruments_node.py names {unresolved}: a literal or an '
                            'INPUTS / INPUT_BY_NAME name lets this test know the name')
    inputs = {resolve(spec.name, '/', 'instruments') for spec in INPUTS}
    assert INSTRUMENTS_GRAPH['publish'] == inputs | {'/diagnostics', '/rosout',
                                                     '/parameter_events'}
    expected = dict(INSTRUMENTS_GRAPH)
    expected['subscribe'] = INSTRUMENTS_GRAPH['subscribe'] | {'/clock'}  # with use_sim_time
    assert PROFILES[SENSORS, 'instruments'] == expected
    # The sensors enclave is the two profiles together: a driver in it may write a
    # /diagnostics status, nothing the pilot obeys, nobody's parameters.
    assert who(ALL, 'publish', '/diagnostics') == {AUTOPILOT_ENCLAVE, SENSORS}
    assert ALL[SENSORS]['request'] == set() and ALL[SENSORS]['subscribe'] == {'/clock'}


def test_the_recorder_reads_the_package_topics_and_writes_and_calls_nothing():
    """autopilot-record's default topics (record.package_topics) and /clock; nothing else."""
    own = {k: {resolve(n, '/', 'autopilot_record') for n in v} for k, v in IMPLICIT.items()}
    topics = {name for name, _, _ in package_topics('')}
    assert topics == {resolve(s.name, '/', 'x') for s in INPUTS} | {
        resolve(o.name, '/', 'x') for o in OUTPUTS}
    assert PROFILES[RECORDER, 'autopilot_record'] == own | {'subscribe': topics | {'/clock'}}
    assert ALL[RECORDER]['publish'] == {'/rosout', '/parameter_events'}
    assert ALL[RECORDER]['request'] == set()
    # Reading the diagnostics or the log is not what a training bag needs.
    assert not {'/diagnostics', '/rosout', '/parameter_events'} & ALL[RECORDER]['subscribe']


# -- the nodes themselves, over DDS -----------------------------------------------------------
def _real_graphs(context) -> dict[tuple[str, str], dict[str, set[str]]]:
    """(enclave, profile node) -> permission -> the names the real node's endpoints have,
    as DDS discovery reports them (rcl's /rosout and type description service included)."""
    import time

    from rclpy.parameter import Parameter

    from autopilot_ros.instruments_node import InstrumentsNode
    from autopilot_ros.node import AutopilotNode
    from autopilot_ros.record_node import RecorderNode, RecordTopic
    from autopilot_ros.sim_node import SimNode

    sim_time = Parameter('use_sim_time', value=True)  # the /clock the profiles allow
    nodes = {
        (AUTOPILOT_ENCLAVE, 'autopilot'): AutopilotNode(
            context=context, parameter_overrides=[sim_time]),
        # As the launch runs it in its enclave: it leaves the course to the helm.
        (SIM_ENCLAVE, 'boat_sim'): SimNode(context=context, parameter_overrides=[
            Parameter('engage_autopilot', value=False)]),
        (SENSORS, 'instruments'): InstrumentsNode(context=context, parameter_overrides=[
            sim_time, Parameter('source', value='nmea0183'),
            Parameter('nmea0183.transport', value='udp'), Parameter('nmea0183.port', value=0)]),
        (RECORDER, 'autopilot_record'): RecorderNode(
            [RecordTopic(n, t, r) for n, t, r in package_topics('')], lambda item: None,
            context=context, parameter_overrides=[sim_time]),
    }
    probe = next(iter(nodes.values()))
    queries = {'publish': probe.get_publisher_names_and_types_by_node,
               'subscribe': probe.get_subscriber_names_and_types_by_node,
               'reply': probe.get_service_names_and_types_by_node,
               'request': probe.get_client_names_and_types_by_node}

    def graph(node) -> dict[str, set[str]]:
        return {k: {name for name, _ in q(node.get_name(), node.get_namespace())}
                for k, q in queries.items()}

    try:
        previous, stable_since = None, time.monotonic()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:  # until discovery has settled for a second
            now = {key: graph(node) for key, node in nodes.items()}
            if now != previous:
                previous, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since > 1.0:
                break
            time.sleep(0.1)
        return previous
    finally:
        nodes[SENSORS, 'instruments'].shutdown()
        for node in nodes.values():
            node.destroy_node()


@pytest.mark.dds
def test_every_real_node_creates_exactly_what_its_profile_allows(rclpy_context):
    """Both ways: an endpoint the profile lacks would make the node fail under Enforce (or
    be a hole), a rule the node does not need is a permission nobody should hold."""
    for key, endpoints in _real_graphs(rclpy_context).items():
        assert endpoints['publish'], f'{key}: discovery showed nothing'
        for permission, names in endpoints.items():
            granted = PROFILES[key][permission]
            assert names == granted, (key, permission, 'node only:', names - granted,
                                      'policy only:', granted - names)


# -- the launch file's enclave argument -------------------------------------------------------
def _keystore(root: pathlib.Path, enclave: str) -> pathlib.Path:
    folder = root / 'enclaves' / enclave.strip('/')
    folder.mkdir(parents=True)
    for name in ('cert.pem', 'key.pem', 'permissions.p7s', 'governance.p7s'):
        (folder / name).write_text('stand-in')
    return root


def test_the_launch_runs_a_node_in_an_enclave_only_with_security_enforced(tmp_path):
    assert enclave_arguments('') is None
    assert enclave_arguments(AUTOPILOT_ENCLAVE) == ['--enclave', AUTOPILOT_ENCLAVE]
    keystore = _keystore(tmp_path / 'ks', AUTOPILOT_ENCLAVE)
    env = {'ROS_SECURITY_ENABLE': 'true', 'ROS_SECURITY_STRATEGY': 'Enforce',
           'ROS_SECURITY_KEYSTORE': str(keystore)}
    assert security_problem(AUTOPILOT_ENCLAVE, env) == ''
    # A node that would look secured and is not: refused, with the reason.
    for change, says in [({'ROS_SECURITY_ENABLE': ''}, 'ROS_SECURITY_ENABLE=true'),
                         ({'ROS_SECURITY_STRATEGY': 'Permissive'}, 'Enforce'),
                         ({'ROS_SECURITY_KEYSTORE': ''}, 'ROS_SECURITY_KEYSTORE'),
                         ({'ROS_SECURITY_KEYSTORE': str(tmp_path)}, 'missing')]:
        assert says in security_problem(AUTOPILOT_ENCLAVE, env | change), change
    assert 'missing' in security_problem(SIM_ENCLAVE, env)  # a boat keystore: no simulator
    assert 'absolute' in security_problem('autopilot_ros/autopilot', env)


def test_the_launch_file_passes_the_enclaves_to_its_nodes():
    source = (REPO / 'launch' / 'autopilot.launch.py').read_text()
    assert "DeclareLaunchArgument('enclave'" in source
    # The autopilot, the simulator, the instrument bridge (in the sensors enclave) and the
    # helm page.
    assert source.count('ros_arguments=enclave_arguments(') == 4
    assert 'ros_arguments=enclave_arguments(helm_enclave)' in source
    assert 'HELM_ENCLAVE if enclave and helm' in source
    assert "'engage_autopilot': not sim_enclave" in source
    assert 'SENSORS_ENCLAVE if enclave and instruments is not None' in source
    assert 'ros_arguments=enclave_arguments(instruments_enclave)' in source


# -- scripts/sros2-setup ----------------------------------------------------------------------
def test_the_setup_script_names_only_enclaves_of_the_policy_and_is_valid_bash():
    text = SCRIPT.read_text()
    assert text.startswith('#!/usr/bin/env bash') and 'set -euo pipefail' in text
    assert os.access(SCRIPT, os.X_OK)
    named = set(re.findall(r'(?:--enclave |enclave:=|OVERRIDE=)(/autopilot_ros/[a-z_]+)',
                           text))
    assert AUTOPILOT_ENCLAVE in named and named <= set(ALL), named - set(ALL)
    subprocess.run(['bash', '-n', str(SCRIPT)], check=True)
    # Its participants are the nodes the profiles name (their own services are allowed).
    check = (SECURITY / 'sros2_check.py').read_text()
    for node in ('helm', 'rudder_driver', 'sensors'):
        assert f"'{node}'" in check


def test_the_setup_script_says_what_it_needs_where_ros2cli_is_missing():
    """Here, and anywhere without ros2cli and sros2: exit 2 and the line that says why."""
    path = '/usr/bin:/bin'
    if shutil.which('ros2', path=path):
        pytest.skip('ros2 is on the system PATH: scripts/sros2-setup --check would run')
    env = {k: v for k, v in os.environ.items() if not k.startswith('ROS_SECURITY')}
    env['PATH'] = path
    usage = subprocess.run(['bash', str(SCRIPT), '--help'], capture_output=True, text=True,
                           env=env)
    assert usage.returncode == 0 and 'usage: sros2-setup' in usage.stdout
    for args in (['--check'], [str(REPO / 'no-keystore-made')]):
        run = subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True,
                             env=env, timeout=60)
        assert run.returncode == 2, run
        assert 'needs ros2cli with sros2' in run.stderr, run.stderr
    assert not (REPO / 'no-keystore-made').exists()
    wrong = subprocess.run(['bash', str(SCRIPT), '--check', 'keystore'], capture_output=True,
                           text=True, env=env)
    assert wrong.returncode == 2 and 'usage:' in wrong.stderr


def test_the_policies_are_installed_with_the_package():
    pytest.importorskip('ament_index_python')  # the colcon install; the pip route has none
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    share = pathlib.Path(get_package_share_directory('autopilot_ros')) / 'security'
    for path in (POLICY, BENCH, SECURITY / 'sros2_check.py'):
        assert (share / path.name).read_text() == path.read_text(), path.name
    lib = pathlib.Path(get_package_prefix('autopilot_ros')) / 'lib' / 'autopilot_ros'
    assert os.access(lib / 'sros2-setup', os.X_OK)
