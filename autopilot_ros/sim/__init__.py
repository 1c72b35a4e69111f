"""Built-in boat simulator: a sailing yacht, its instruments, scenarios and an expert helmsman.

Pure Python + numpy (no rclpy), so tests, demos and training-data generation run anywhere.
"""

from autopilot_ros.sim.boat import Boat, BoatParams, BoatState, WaveField, WindModel, polar_speed
from autopilot_ros.sim.helmsman import ExpertHelmsman, HelmsmanSkill
from autopilot_ros.sim.scenarios import SCENARIOS, Scenario
from autopilot_ros.sim.sensors import SensorConfig, Sensors
from autopilot_ros.sim.simulator import Simulator, target_heading_for

__all__ = [
    'SCENARIOS',
    'Boat',
    'BoatParams',
    'BoatState',
    'ExpertHelmsman',
    'HelmsmanSkill',
    'Scenario',
    'SensorConfig',
    'Sensors',
    'Simulator',
    'WaveField',
    'WindModel',
    'polar_speed',
    'target_heading_for',
]
