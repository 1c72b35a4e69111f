"""Launch the autopilot node (and optionally the boat simulator and rviz).

    ros2 launch autopilot_ros autopilot.launch.py                       # the PID pilot alone
    ros2 launch autopilot_ros autopilot.launch.py sim:=true rviz:=true
    ros2 launch autopilot_ros autopilot.launch.py model_path:=/path/to/model.onnx
    ros2 launch autopilot_ros autopilot.launch.py model_path:=shipped   # the package's model
    ros2 launch autopilot_ros autopilot.launch.py sim:=true helmsman:=expert hand_steering:=true
    ros2 launch autopilot_ros autopilot.launch.py enclave:=/autopilot_ros/autopilot   # SROS2
    ros2 launch autopilot_ros autopilot.launch.py instruments:=nmea0183 \
        nmea0183_host:=192.168.1.1 nmea0183_port:=10110       # the boat's NMEA multiplexer
    ros2 launch autopilot_ros autopilot.launch.py instruments:=nmea2000   # CAN hat, can0
    ros2 launch autopilot_ros autopilot.launch.py sim:=true instruments:=nmea0183
    ros2 launch autopilot_ros autopilot.launch.py helm:=true helm_token_file:=~/.helm_token
    ros2 launch autopilot_ros autopilot.launch.py sim:=true instruments:=signalk

The nodes are made in one OpaqueFunction, after the arguments are known: `model_path` goes
to the node only when given (command line > params file > none: the PID pilot), and
`rviz:=true` without rviz2 stops the launch before anything starts (launch_config.py).
With `enclave` (SROS2, scripts/sros2-setup) the autopilot runs in that enclave, and only
when ROS_SECURITY_* say security is enforced and the keystore has its keys; the simulator
then runs in SIM_ENCLAVE without setting the autopilot's course (the helm does), the
instrument bridge in SENSORS_ENCLAVE, and rviz, which has no enclave in the policy, is
refused. `helm:=true` also serves the helm page (helm_node); with `enclave` it runs in
HELM_ENCLAVE. With sim:=true instruments:=signalk a throwaway signalk-server on loopback
(instruments/signalk_server.py) runs as a process of its own: the simulator writes to it,
the bridge reads it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from autopilot_ros.launch_config import (
    HELM_ENCLAVE,
    HELM_PORT,
    INSTRUMENT_ARGUMENTS,
    SENSORS_ENCLAVE,
    SIM_ENCLAVE,
    default_params_file,
    enclave_arguments,
    helm_parameters,
    instruments_parameters,
    node_parameters,
    rviz_config,
    rviz_missing,
    security_problem,
    signalk_server_command,
    sim_parameters_for_instruments,
)

# The bridge and the helm page are started again when they exit. The boot service's watchdog
# watches the autopilot's control tick only (systemd sees one service), so without this a
# bridge that died would leave the pilot without instruments until the next boot. A bridge
# that hangs without exiting shows as stale inputs in the autopilot's status and
# /diagnostics; the pilot acts on those as on any stale sensor.
RESPAWN_DELAY = 3.0  # s, as the unit's RestartSec


def _flag(context: LaunchContext, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ('true', '1', 'yes')


def _nodes(context: LaunchContext) -> list:
    share = get_package_share_directory('autopilot_ros')
    namespace = LaunchConfiguration('namespace').perform(context)
    sim = _flag(context, 'sim')
    use_sim_time = _flag(context, 'use_sim_time') if LaunchConfiguration(
        'use_sim_time').perform(context) else sim
    rviz = _flag(context, 'rviz')
    if rviz and (why := rviz_missing()):
        raise RuntimeError(why)
    try:
        instruments = instruments_parameters(
            LaunchConfiguration('instruments').perform(context),
            {name: LaunchConfiguration(name).perform(context) for name in INSTRUMENT_ARGUMENTS},
            use_sim_time=use_sim_time, sim=sim)
        signalk_server = signalk_server_command(instruments, sim=sim)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    enclave = LaunchConfiguration('enclave').perform(context).strip()
    sim_enclave = SIM_ENCLAVE if enclave and sim else ''
    # The bridge is a sensor driver: the sensors enclave (security/autopilot_ros.policy.xml).
    instruments_enclave = SENSORS_ENCLAVE if enclave and instruments is not None else ''
    helm = _flag(context, 'helm')
    helm_enclave = HELM_ENCLAVE if enclave and helm else ''
    for name in filter(None, (enclave, sim_enclave, instruments_enclave, helm_enclave)):
        if why := security_problem(name, os.environ):
            raise RuntimeError(why)
    if enclave and rviz:
        raise RuntimeError('rviz:=true with enclave: the SROS2 policy has no enclave for '
                           'rviz2; watch from an unsecured bench. Nothing was started')
    nodes = [Node(
        package='autopilot_ros', executable='autopilot_node', name='autopilot',
        namespace=namespace, output='screen', ros_arguments=enclave_arguments(enclave),
        parameters=node_parameters(
            LaunchConfiguration('params_file').perform(context),
            model_path=LaunchConfiguration('model_path').perform(context),
            use_sim_time=use_sim_time, hand_steering=_flag(context, 'hand_steering'),
            sim=sim),
    )]
    if sim:
        # repeat: keep sailing after the last scenario, so the pilot never sits on a frozen
        # clock; stop with Ctrl-C.
        # In its enclave the simulator may not call the autopilot's services (only the helm
        # may): it leaves the course to the helm station.
        nodes.append(Node(
            package='autopilot_ros', executable='sim_node', name='boat_sim',
            namespace=namespace, output='screen', ros_arguments=enclave_arguments(sim_enclave),
            parameters=[{'scenario': LaunchConfiguration('scenario').perform(context),
                         'real_time_factor': 1.0, 'repeat': True,
                         'helmsman': LaunchConfiguration('helmsman').perform(context),
                         'boat': LaunchConfiguration('boat').perform(context),
                         'boat_file': LaunchConfiguration('boat_file').perform(context),
                         'engage_autopilot': not sim_enclave, 'use_sim_time': False,
                         **sim_parameters_for_instruments(instruments)}],
        ))
    if signalk_server is not None:
        # Not a ROS node: no enclave. SIGINT (Ctrl-C) stops it and removes its folder.
        nodes.append(ExecuteProcess(cmd=signalk_server, name='signalk_server', output='screen'))
    if instruments is not None:
        nodes.append(Node(
            package='autopilot_ros', executable='instruments_node', name='instruments',
            namespace=namespace, output='screen', parameters=[instruments],
            ros_arguments=enclave_arguments(instruments_enclave),
            respawn=True, respawn_delay=RESPAWN_DELAY,
        ))
    if helm:
        # The helm page: a browser on the boat's wifi steers through the autopilot's
        # services, as a helm station does (README, "The helm page").
        nodes.append(Node(
            package='autopilot_ros', executable='helm_node', name='helm',
            namespace=namespace, output='screen', ros_arguments=enclave_arguments(helm_enclave),
            parameters=[helm_parameters(
                LaunchConfiguration('helm_address').perform(context),
                LaunchConfiguration('helm_port').perform(context),
                LaunchConfiguration('helm_token_file').perform(context),
                LaunchConfiguration('helm_foxglove_port').perform(context))],
            respawn=True, respawn_delay=RESPAWN_DELAY,
        ))
    if rviz:
        nodes.append(Node(
            package='rviz2', executable='rviz2', name='rviz2', namespace=namespace,
            arguments=['-d', rviz_config(share)], parameters=[{'use_sim_time': use_sim_time}],
        ))
    return nodes


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory('autopilot_ros')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params_file(share),
                              description='autopilot node parameters (YAML)'),
        DeclareLaunchArgument('model_path', default_value='',
                              description="ONNX model; 'none' = the PID pilot only; 'shipped' "
                                          "= the package's model; not given: the params "
                                          'file, else the PID pilot only'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace for the nodes and their topics'),
        DeclareLaunchArgument('sim', default_value='false',
                              description='also start the boat simulator (sim_node)'),
        DeclareLaunchArgument('use_sim_time', default_value='',
                              description='follow /clock (default: true with sim:=true)'),
        DeclareLaunchArgument('scenario', default_value='beam_reach',
                              description='simulator scenario (with sim:=true)'),
        DeclareLaunchArgument('boat', default_value='reference',
                              description='with sim:=true, the boat sailed: reference, a '
                                          'held-out boat or family_<seed>'),
        DeclareLaunchArgument('boat_file', default_value='',
                              description='with sim:=true, a boat file to sail instead (your '
                                          "boat's twin: autopilot-train identify)"),
        DeclareLaunchArgument('helmsman', default_value='autopilot',
                              description="with sim:=true, who steers the simulated boat: "
                                          "'autopilot' or 'expert'"),
        DeclareLaunchArgument('hand_steering', default_value='false',
                              description='the node reports mode and target but leaves the '
                                          'helm alone (for recording training bags)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start rviz2 with the autopilot view'),
        DeclareLaunchArgument('enclave', default_value='',
                              description='SROS2 enclave of the autopilot node, e.g. '
                                          '/autopilot_ros/autopilot (scripts/sros2-setup); '
                                          'needs ROS_SECURITY_ENABLE=true, Enforce and the '
                                          'keystore'),
        DeclareLaunchArgument('instruments', default_value='none',
                              description='instrument bridge: nmea0183, nmea2000, signalk or '
                                          'none (instruments_node)'),
        *(DeclareLaunchArgument(name, default_value='',
                                description=f'instruments_node {param} (empty: its default)')
          for name, (param, _) in INSTRUMENT_ARGUMENTS.items()),
        DeclareLaunchArgument('helm', default_value='false',
                              description='also serve the helm page (helm_node) for a browser'),
        DeclareLaunchArgument('helm_address', default_value='127.0.0.1',
                              description="the helm page's address: 127.0.0.1 (this computer "
                                          "only) or the boat's own wifi address; 0.0.0.0 "
                                          'serves every network the computer is on'),
        DeclareLaunchArgument('helm_port', default_value=str(HELM_PORT),
                              description="the helm page's TCP port"),
        DeclareLaunchArgument('helm_token_file', default_value='',
                              description='file holding the access token that unlocks the '
                                          'helm buttons (none: the page is view only)'),
        DeclareLaunchArgument('helm_foxglove_port', default_value='0',
                              description='also offer the helm state to Foxglove on this port '
                                          '(foxglove-sdk, view only); 0 = off'),
        OpaqueFunction(function=_nodes),
    ])
