"""How each epoch's mini-batches reach the compiled network.

:class:`ArrayFeed` serves data that supports random access (arrays, memory
maps, sparse matrices, row-indexable datasets): it is bound once per fit and
each epoch only sets the order of the rows -- a fresh permutation
(``shuffle=True``), the data order (``False``), or, for data on disk, a
chunk-ordered shuffle (``"chunks"``: the order of chunks of ``chunk_rows``
rows is shuffled, then the rows within each group of ``buffer_chunks``
consecutive chunks; every sample is still used once per epoch, without
replacement, while reads stay within a few chunks at a time).

:class:`StreamFeed` serves a *source*: an iterable of ``(X_chunk, y_chunk)``
pairs that can be iterated again each epoch (a list of pairs, an object
whose ``__iter__`` starts over), or a callable returning such an iterable
(e.g. a generator function). Chunks are gathered into a shuffle buffer of at
least ``buffer_rows`` rows; the buffer's rows are shuffled and served as
whole mini-batches, the rows left over join the next buffer, and the last
mini-batch of the epoch keeps the remainder. Every sample is served once per
epoch.
"""

import numpy as np

from ._validate import check_int, check_weights


def chunk_permutation(rng, n, chunk_rows, buffer_chunks):
    """A permutation of ``range(n)`` that shuffles chunk order, then rows
    within groups of ``buffer_chunks`` chunks (see the module documentation)."""
    n_chunks = -(-n // chunk_rows)
    order = rng.permutation(n_chunks)
    parts = []
    for g in range(0, n_chunks, buffer_chunks):
        rows = np.concatenate([np.arange(c * chunk_rows, min(n, (c + 1) * chunk_rows),
                                         dtype=np.int64) for c in order[g:g + buffer_chunks]])
        parts.append(rng.permutation(rows))
    return np.concatenate(parts).astype(np.int64, copy=False)


class ArrayFeed:
    """Epochs over data bound once (see the module documentation)."""

    def __init__(self, net, X, t, batch_size, shuffle, rng, chunk_rows, buffer_chunks,
                 read_only_indices, sample_weight=None):
        self.net, self.rng = net, rng
        self.shuffle, self.chunk_rows, self.buffer_chunks = shuffle, chunk_rows, buffer_chunks
        net.bind(X, t, sample_weight)
        self.n = X.n_rows
        self.bs = min(batch_size, self.n)
        self.n_batches = -(-self.n // self.bs)
        self.read_only = read_only_indices
        self.order = np.arange(self.n, dtype=np.int64)

    def epoch(self, epoch=0):
        """Yield ``(start, rows, indices)`` per mini-batch; the net is ready to run it."""
        if self.shuffle == "chunks":
            self.order = chunk_permutation(self.rng, self.n, self.chunk_rows, self.buffer_chunks)
            self.net.set_order(self.order)
        elif self.shuffle:
            self.order = np.asarray(self.rng.permutation(self.n), dtype=np.int64)
            self.net.set_order(self.order)
        if self.read_only:
            self.order.flags.writeable = False
        for b in range(self.n_batches):
            start = b * self.bs
            nb = min(self.bs, self.n - start)
            yield start, nb, self.order[start:start + nb]


class SourceError(ValueError):
    """A streamed source yielded something the model cannot train on."""


class StreamFeed:
    """Epochs over a streamed source (see the module documentation)."""

    def __init__(self, net, source, prepare_chunk, batch_size, shuffle, rng, buffer_rows):
        self.net, self.source, self.prepare_chunk = net, source, prepare_chunk
        self.bs = batch_size
        self.shuffle, self.rng = shuffle, rng
        self.buffer_rows = max(check_int("shuffle_buffer", buffer_rows, minimum=1), batch_size)
        self.n_batches = None   # known after the first epoch
        self.n = None
        self._weighted = None   # whether the items carry weights (set by the first one)

    def _chunks(self, epoch):
        src = self.source() if callable(self.source) else self.source
        try:
            it = iter(src)
        except TypeError:
            raise SourceError("the source must be an iterable of (X, y) pairs or a callable "
                              "returning one") from None
        if not callable(self.source) and it is src and epoch > 0:
            raise SourceError("the source is a one-shot iterator: it cannot be read again for "
                              "the next epoch; pass a callable that returns a new iterator "
                              "(e.g. the generator function itself) or a list")
        for k, item in enumerate(it):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise SourceError(f"source item {k} must be an (X, y) pair or an (X, y, w) "
                                  f"triple, got {type(item).__name__}")
            X, t = self.prepare_chunk(item[0], item[1], k)
            if len(t) != X.shape[0]:
                raise SourceError(f"source item {k}: X has {X.shape[0]} rows but y has {len(t)}")
            w = None
            if len(item) == 3:
                try:
                    w = check_weights(f"source item {k}: w", item[2], X.shape[0])
                except ValueError as e:
                    raise SourceError(str(e)) from None
            if self._weighted is None:
                self._weighted = w is not None
            elif self._weighted != (w is not None):
                raise SourceError(f"source item {k}: give weights with every item or none")
            yield X, t, w

    def _serve(self, Xs, ts, ws, final):
        """Bind the buffer's rows (shuffled) and yield its whole batches; keep the rest."""
        X = np.concatenate(Xs) if len(Xs) > 1 else Xs[0]
        t = np.concatenate(ts) if len(ts) > 1 else ts[0]
        w = None if not ws else (np.concatenate(ws) if len(ws) > 1 else ws[0])
        n = X.shape[0]
        perm = self.rng.permutation(n) if self.shuffle else np.arange(n)
        n_serve = n if final else (n // self.bs) * self.bs
        take = perm[:n_serve]
        rest = perm[n_serve:]
        self.net.bind(np.ascontiguousarray(X[take]), np.ascontiguousarray(t[take]),
                      None if w is None else w[take])
        for start in range(0, n_serve, self.bs):
            yield start, min(self.bs, n_serve - start), None
        if rest.size:
            self._rest = ([X[rest]], [t[rest]], [] if w is None else [w[rest]])
        else:
            self._rest = ([], [], [])

    def epoch(self, epoch=0):
        Xs, ts, ws, held, total, batches = [], [], [], 0, 0, 0
        for X, t, w in self._chunks(epoch):
            Xs.append(X)
            ts.append(t)
            if w is not None:
                ws.append(w)
            held += X.shape[0]
            total += X.shape[0]
            if held >= self.buffer_rows:
                for item in self._serve(Xs, ts, ws, final=False):
                    batches += 1
                    yield item
                Xs, ts, ws = self._rest
                held = sum(x.shape[0] for x in Xs)
        if total == 0:
            raise SourceError(f"the source yielded no samples in epoch {epoch + 1}")
        if held:
            for item in self._serve(Xs, ts, ws, final=True):
                batches += 1
                yield item
        self.n_batches, self.n = batches, total
