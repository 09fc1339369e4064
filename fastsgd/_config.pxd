# cython: language_level=3
cdef int num_threads() noexcept nogil
