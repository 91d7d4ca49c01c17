"""aiokafka client arguments from `KafkaSettings` (bootstrap, TLS, SASL).

The same builder as every heatstream client (`heatstream.kafka_security`), so the sink
accepts and refuses exactly the configurations the gateway and the worker do.
"""

from __future__ import annotations

from heatstream.kafka_security import client_kwargs

__all__ = ["client_kwargs"]
