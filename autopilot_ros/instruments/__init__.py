"""Instrument bridges: a boat's NMEA 0183, NMEA 2000 and Signal K data in, this package's
topics out. Each source is a pure parser (bytes or JSON in, `readings.Reading`s out) plus a
transport that reconnects with backoff; `instruments_node` is the thin ROS layer."""
