"""Inspection of a tracevaultd data dir and log: the catalog's blocks, the block files, the
tmp dir, and the log lines about one segment."""
import os


def catalog_blocks(data_dir):
    """{block_id: segment_id} from DATA/catalog.db (ids as unsigned 64-bit)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True,
                         timeout=10)
    try:
        rows = db.execute("SELECT block_id, segment_id FROM blocks").fetchall()
    finally:
        db.close()
    return {b & (2**64 - 1): s & (2**64 - 1) for b, s in rows}


def block_files(data_dir):
    """Block ids of the files in DATA/blocks (names are <16hex>.tvb)."""
    out = set()
    for name in os.listdir(os.path.join(data_dir, "blocks")):
        assert name.endswith(".tvb") and len(name) == 20, "unexpected file blocks/%s" % name
        out.add(int(name[:16], 16))
    return out


def tmp_files(data_dir):
    return sorted(os.listdir(os.path.join(data_dir, "tmp")))


def segment_log_lines(log, segment_id):
    """The server log lines about one segment ('segment <16hex> ...')."""
    tag = "segment %016x " % segment_id
    return [line for line in log.splitlines() if line.startswith(tag)]
