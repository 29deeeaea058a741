"""How the recording proxy packs what it stores in ``traffic.sqlite`` (schema version 2,
docs/contracts.md): the writer's half; ``remote_runner/analysis/traffic.py`` is the reader's.

An hour of traffic stored as it came takes about 2.6 KB per request, most of it bodies and headers
that repeat (JSON of one API's resources, Spring error pages whose stack traces come from a few
dozen templates). Zstandard with a dictionary trained on the run's own first requests takes that to
about 0.4 KB (docs/results.md has the figures), so each value of the four packed columns
(``request_headers``, ``request_body``, ``response_headers``, ``response_body``) of a row whose
``packing`` is 1 is a BLOB: one tag byte, then

- tag 0: the value itself (empty values, and values compression would not shrink);
- tag 1: a zstandard frame of the value;
- tag 2: a zstandard frame made with a dictionary of table ``dictionaries``, the one whose
  ``zstd_dict_id`` is the frame header's dictionary id.

Headers are packed as the UTF-8 bytes of their JSON text (the text of schema 1's columns). Every
value comes back byte for byte. The dictionary is trained once per database, in a thread, from the
values of the first ``TRAIN_AFTER`` requests; until then (and if training fails) values are packed
without one. Without the zstandard module (an image whose own Python lacks it, such as one built on
a published RESTgym image) rows are stored as in schema 1 (``packing`` NULL) and every reader still
reads them.

Runs on Python >= 3.8 and python-zstandard >= 0.19 (Debian bookworm has 0.20).
"""

from __future__ import annotations

import threading
from typing import Any

try:  # the image's Python may lack it: rows are then stored unpacked
    import zstandard
except ImportError:  # pragma: no cover - depends on the image
    zstandard = None

SCHEMA_VERSION = 2
PACKED = 1  # requests.packing of rows whose four packed columns hold tagged values
RAW, FRAME, DICT_FRAME = 0, 1, 2
LEVEL = 3
DICT_SIZE = 112 * 1024
TRAIN_AFTER = 2000  # requests whose values train the dictionary
SAMPLE_CAP = 64 * 1024  # bytes of one value kept as a training sample
SAMPLES_CAP = 16 * 1024 * 1024  # bytes of samples kept in all


class Packer:
    """Packs values (bytes -> tagged BLOB), trains the dictionary in the background."""

    def __init__(self, dictionary: bytes | None = None, train: bool = True) -> None:
        self.enabled = zstandard is not None
        self._plain: Any = zstandard.ZstdCompressor(level=LEVEL) if self.enabled else None
        self._with_dict: Any = None
        self.dictionary: bytes | None = None
        self.dict_id: int | None = None
        self._samples: list[bytes] = []
        self._sampled_bytes = 0
        self._requests_seen = 0
        self._training: threading.Thread | None = None
        self._trained: bytes | None = None
        self._train = train and self.enabled
        if dictionary is not None and self.enabled:
            self.use_dictionary(dictionary)

    def use_dictionary(self, content: bytes) -> None:
        d = zstandard.ZstdCompressionDict(content)
        self._with_dict = zstandard.ZstdCompressor(level=LEVEL, dict_data=d)
        self.dictionary = content
        self.dict_id = d.dict_id()
        self._train = False
        self._samples = []

    def pack(self, value: bytes) -> bytes:
        """The tagged BLOB of ``value`` (tag 0 + value when zstandard is missing or does not pay)."""
        best = bytes((RAW,)) + value
        if not self.enabled or not value:
            return best
        if self._with_dict is not None:
            frame = self._with_dict.compress(value)
            if len(frame) + 1 < len(best):
                best = bytes((DICT_FRAME,)) + frame
        else:
            frame = self._plain.compress(value)
            if len(frame) + 1 < len(best):
                best = bytes((FRAME,)) + frame
        if self._train and value:
            self._sample(value)
        return best

    def _sample(self, value: bytes) -> None:
        if self._sampled_bytes < SAMPLES_CAP:
            sample = value[:SAMPLE_CAP]
            self._samples.append(sample)
            self._sampled_bytes += len(sample)

    def request_seen(self) -> None:
        """Counts a recorded request; the ``TRAIN_AFTER``-th starts the training thread."""
        self._requests_seen += 1
        if self._train and self._training is None and self._requests_seen >= TRAIN_AFTER:
            samples, self._samples = self._samples, []
            self._train = False
            self._training = threading.Thread(target=self._run_training, args=(samples,), daemon=True)
            self._training.start()

    def _run_training(self, samples: list[bytes]) -> None:
        try:
            self._trained = zstandard.train_dictionary(DICT_SIZE, samples, level=LEVEL).as_bytes()
        except Exception:  # too few or too uniform samples: values stay packed without a dictionary
            self._trained = None

    def trained(self) -> bytes | None:
        """The dictionary the background training produced, once (then None again)."""
        if self._training is None or self._training.is_alive():
            return None
        found, self._trained, self._training = self._trained, None, None
        return found

    def wait_for_training(self, timeout: float | None = None) -> None:
        if self._training is not None:
            self._training.join(timeout)
