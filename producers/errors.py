"""The producers' errors, each with the exit code the CLI answers it with.

ProducerError          anything that stops a run before it is done
├── InputError         the input cannot be read as asked, or a bad row with --on-bad-row fail (1)
└── KafkaUnavailable   the broker cannot be reached, a topic is missing, a send cannot start (2)
"""

from __future__ import annotations


class ProducerError(Exception):
    exit_code = 1


class InputError(ProducerError):
    exit_code = 1


class KafkaUnavailable(ProducerError):
    exit_code = 2
