"""``tfds.testing.mock_data`` that works with ``tfds.data_source``'s batched reads.

tfds 4.9.10's mock binds ``__getitems__`` without the data source, so a
batched read raises ``TypeError: _getitems() missing ... 'record_keys'``;
:func:`mocked` replaces that one helper with a correct one.
"""
import contextlib
from unittest import mock

import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking


def _getitems(*args, generator, serialized=False):
    """The mock's batched read, with the keys as the last positional argument."""
    assert not serialized
    return [generator[int(k)] for k in args[-1]]


@contextlib.contextmanager
def mocked(num_examples):
    with tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE), \
            mock.patch.object(mocking, "_getitems", _getitems):
        yield
