"""Writing files so that a crash never leaves half of one behind."""
import errno
import os
import secrets
import stat

#: errors of fsync on a folder that only mean the file system does not support it
_NO_DIR_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}


def _sync_folder(folder):
    """fsync ``folder`` so that a rename in it survives a power cut (where supported)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _NO_DIR_SYNC:
            raise
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``.

    The data is fsynced before the rename and the folder after it. A file
    that already exists keeps its permission bits; a new one gets the usual
    ``0o666`` less the umask (not the ``0o600`` of a temporary file). If
    ``write`` raises, ``path`` is untouched and the temporary file removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp-{os.path.basename(path)}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
            break
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "the folder does not exist", folder) from None
    else:  # pragma: no cover - 100 random names taken
        raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(folder)
