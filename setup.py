"""pip route: the ROS-free parts (features, inference, simulator, training) without ROS.

colcon does not use this file (CMakeLists.txt installs the package next to the generated
messages). Here the top-level training/ folder becomes `autopilot_ros.training`, the .msg
files ship as package data so bags can be read without ROS, and the modules that need
rclpy are left out.
"""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).parent
ROS_MODULES = {'node', 'sim_node', 'demo', 'ros_messages', 'instruments_node', 'record_node',
               'helm_node'}


class BuildPy(build_py):
    """Leave out the rclpy modules; copy msg/*.msg into autopilot_ros/msg_defs/."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == 'autopilot_ros':
            modules = [m for m in modules if m[1] not in ROS_MODULES]
        return modules

    def run(self):
        super().run()
        target = pathlib.Path(self.build_lib) / 'autopilot_ros' / 'msg_defs'
        target.mkdir(parents=True, exist_ok=True)
        for msg in sorted((HERE / 'msg').glob('*.msg')):
            shutil.copy2(msg, target / msg.name)


setup(
    name='autopilot_ros',
    version='0.1.0',
    description='Learned sailing autopilot: features, ONNX inference, simulator, training',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=['autopilot_ros', 'autopilot_ros.sim', 'autopilot_ros.training',
              'autopilot_ros.training.bags', 'autopilot_ros.instruments'],
    package_dir={'autopilot_ros.training': 'training'},
    # The helm page's files (helm_server.py serves them; helm_node needs ROS).
    package_data={'autopilot_ros': ['web/*']},
    install_requires=['numpy'],
    extras_require={
        'rpi': ['numpy', 'onnxruntime', 'sdnotify'],
        'train': ['torch', 'onnx', 'onnxscript', 'onnxruntime', 'rosbags', 'matplotlib',
                  'pyyaml', 'scipy'],
        # The instrument bridges' parsers and transports (instruments_node needs ROS).
        # msgpack: python-can's udp_multicast, a CAN bus between processes without vcan.
        'instruments': ['pynmea2', 'pyserial', 'python-can', 'msgpack', 'nmea2000',
                        'websockets>=15'],
        'helm': ['aiohttp'],
        'test': ['pytest', 'mcap', 'sdnotify', 'hypothesis', 'pynmea2', 'pyserial', 'python-can',
                 'msgpack', 'nmea2000', 'websockets>=15', 'aiohttp'],
        # autopilot-record (it also needs rclpy: a ROS 2 install or the ROS 2 wheels).
        'record': ['mcap', 'pyyaml'],
    },
    entry_points={'console_scripts': [
        'autopilot-eval = autopilot_ros.sim.evaluate:main',
        'autopilot-train = autopilot_ros.training.cli:main',
        'autopilot-record = autopilot_ros.record:entry',
    ]},
    cmdclass={'build_py': BuildPy},
)
