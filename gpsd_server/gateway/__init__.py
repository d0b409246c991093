"""Drivers that bring terminals in over protocols other than MQTT.

``jt808_tcp`` accepts JT/T 808 terminals over TCP and republishes their
messages to MQTT in the EMQX gateway's JSON shape.
"""
