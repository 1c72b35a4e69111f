"""autopilot_ros: a learned autopilot for sailing boats."""
