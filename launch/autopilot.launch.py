"""Launch the autopilot node (and optionally the boat simulator and rviz).

    ros2 launch autopilot_ros autopilot.launch.py
    ros2 launch autopilot_ros autopilot.launch.py sim:=true rviz:=true
    ros2 launch autopilot_ros autopilot.launch.py model_path:=/path/to/model.onnx
    ros2 launch autopilot_ros autopilot.launch.py sim:=true helmsman:=expert hand_steering:=true
"""

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from autopilot_ros.launch_config import default_model_path, default_params_file, rviz_config


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory('autopilot_ros')
    params_file = LaunchConfiguration('params_file')
    model_path = LaunchConfiguration('model_path')
    namespace = LaunchConfiguration('namespace')
    use_sim_time = ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool)
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params_file(share),
                              description='autopilot node parameters (YAML)'),
        DeclareLaunchArgument('model_path', default_value=default_model_path(share),
                              description="ONNX model; 'none' = the PD pilot only"),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace for the nodes and their topics'),
        DeclareLaunchArgument('sim', default_value='false',
                              description='also start the boat simulator (sim_node)'),
        DeclareLaunchArgument('use_sim_time', default_value=LaunchConfiguration('sim'),
                              description='follow /clock (true by default with sim:=true)'),
        DeclareLaunchArgument('scenario', default_value='beam_reach',
                              description='simulator scenario (with sim:=true)'),
        DeclareLaunchArgument('helmsman', default_value='autopilot',
                              description="with sim:=true, who steers the simulated boat: "
                                          "'autopilot' or 'expert'"),
        DeclareLaunchArgument('hand_steering', default_value='false',
                              description='the node reports mode and target but leaves the '
                                          'helm alone (for recording training bags)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start rviz2 with the autopilot view'),
        Node(
            package='autopilot_ros', executable='autopilot_node', name='autopilot',
            namespace=namespace, output='screen',
            parameters=[params_file, {'model_path': model_path,
                                      'use_sim_time': use_sim_time,
                                      'hand_steering': ParameterValue(
                                          LaunchConfiguration('hand_steering'),
                                          value_type=bool)}],
        ),
        Node(
            package='autopilot_ros', executable='sim_node', name='boat_sim',
            namespace=namespace, output='screen',
            condition=IfCondition(LaunchConfiguration('sim')),
            # repeat: keep sailing after the last scenario, so the pilot never sits on a
            # frozen clock; stop with Ctrl-C.
            parameters=[{'scenario': LaunchConfiguration('scenario'), 'real_time_factor': 1.0,
                         'repeat': True,
                         'helmsman': LaunchConfiguration('helmsman'),
                         'use_sim_time': False}],
        ),
        Node(
            package='rviz2', executable='rviz2', name='rviz2', namespace=namespace,
            arguments=['-d', rviz_config(share)],
            parameters=[{'use_sim_time': use_sim_time}],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
