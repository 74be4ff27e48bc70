"""The state database's schema: ``MIGRATIONS[i]`` moves a database from version i to i+1.

The version lives in ``PRAGMA user_version``; each migration runs in one transaction
(``selfloop.store.db.Store._migrate``). Append only: a released migration never changes.
"""

MIGRATIONS: list[str] = [
    # 0 -> 1: the initial schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    -- One row per source file under orig/ or rework/ (path relative to the corpus root).
    CREATE TABLE files (
        path        TEXT PRIMARY KEY,
        origin      TEXT NOT NULL CHECK (origin IN ('orig', 'rework')),
        size        INTEGER,
        mtime_ns    INTEGER,
        sha256      TEXT,
        status      TEXT NOT NULL CHECK (status IN ('ingested', 'quarantined', 'removed')),
        reason      TEXT,
        n_docs      INTEGER NOT NULL DEFAULT 0,
        n_dropped   INTEGER NOT NULL DEFAULT 0,
        updated_at  REAL NOT NULL
    );

    -- Units of training data. Dropped and duplicate documents are kept for inspection.
    CREATE TABLE documents (
        id          INTEGER PRIMARY KEY,
        file_path   TEXT NOT NULL,
        locator     TEXT NOT NULL,          -- "line 12", "chunk 3", ...
        origin      TEXT NOT NULL,          -- orig | rework
        kind        TEXT NOT NULL,          -- text | chat | task
        format      TEXT NOT NULL,          -- txt | md | py | jsonl
        hash        TEXT NOT NULL,          -- sha256 of the normalized content
        content     TEXT NOT NULL,          -- normalized text, or JSON for chat/task records
        n_chars     INTEGER NOT NULL,
        split       TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
        status      TEXT NOT NULL CHECK (status IN ('active', 'dropped', 'duplicate', 'removed')),
        reason      TEXT,
        minhash     BLOB,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX documents_file ON documents (file_path);
    CREATE INDEX documents_hash ON documents (hash, status);
    CREATE INDEX documents_status ON documents (status, origin, split);

    CREATE TABLE cycles (
        id          INTEGER PRIMARY KEY,
        started_at  REAL NOT NULL,
        finished_at REAL,
        phase       TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
        generation  INTEGER,                -- the challenger this cycle trains
        error       TEXT,
        detail      TEXT NOT NULL DEFAULT '{}'
    );

    CREATE TABLE candidates (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER,
        generation  INTEGER,                -- the model generation that wrote it
        strategy    TEXT NOT NULL,          -- rewrite | synthesize | solve | ...
        kind        TEXT NOT NULL,          -- text | chat | python | task
        source_ids  TEXT NOT NULL DEFAULT '[]',
        content     TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
        reason      TEXT,
        scores      TEXT NOT NULL DEFAULT '{}',
        rework_path TEXT,
        created_at  REAL NOT NULL
    );
    CREATE INDEX candidates_cycle ON candidates (cycle_id, status);
    CREATE INDEX candidates_reason ON candidates (status, reason);

    CREATE TABLE verdicts (
        id           INTEGER PRIMARY KEY,
        candidate_id INTEGER NOT NULL REFERENCES candidates (id),
        judge        TEXT NOT NULL,
        status       TEXT NOT NULL,
        score        REAL,
        reason       TEXT,
        detail       TEXT NOT NULL DEFAULT '{}',
        created_at   REAL NOT NULL
    );
    CREATE INDEX verdicts_candidate ON verdicts (candidate_id);

    -- Chosen / rejected pairs for preference training.
    CREATE TABLE pairs (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER,
        prompt      TEXT NOT NULL,
        chosen      TEXT NOT NULL,
        rejected    TEXT NOT NULL,
        source      TEXT NOT NULL,          -- a_vs_b | task
        created_at  REAL NOT NULL
    );

    CREATE TABLE generations (
        id          INTEGER PRIMARY KEY,    -- generation number
        parent      INTEGER,
        path        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('training', 'candidate', 'promoted', 'rejected', 'pruned', 'failed')),
        metrics     TEXT NOT NULL DEFAULT '{}',
        gate        TEXT NOT NULL DEFAULT '{}',
        recipe      TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        decided_at  REAL
    );

    CREATE TABLE train_metrics (
        id          INTEGER PRIMARY KEY,
        generation  INTEGER NOT NULL,
        step        INTEGER NOT NULL,
        kind        TEXT NOT NULL,          -- train | eval
        loss        REAL,
        lr          REAL,
        tokens_per_s REAL,
        eta_s       REAL,
        ts          REAL NOT NULL
    );
    CREATE INDEX train_metrics_gen ON train_metrics (generation, step);

    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        ts          REAL NOT NULL,
        kind        TEXT NOT NULL,
        message     TEXT NOT NULL,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_kind ON events (kind, id);
    """,
    # 1 -> 2: a duplicate document points at the document it duplicates, so that
    # removing that document can bring the duplicate back instead of losing the text.
    """
    ALTER TABLE documents ADD COLUMN dup_of INTEGER;
    CREATE INDEX documents_dup_of ON documents (dup_of) WHERE dup_of IS NOT NULL;
    """,
    # 2 -> 3: a candidate keeps what the model saw and wrote, and the original it
    # competes with, so judging can resume after a crash and A-vs-B pairs can be stored.
    """
    ALTER TABLE candidates ADD COLUMN prompt TEXT;
    ALTER TABLE candidates ADD COLUMN completion TEXT;
    ALTER TABLE candidates ADD COLUMN original TEXT;
    """,
    # 3 -> 4: what a solve candidate answers (its task record, answer mode, decoded
    # answer, whether it was a hinted retry), so the task judge can check it.
    """
    ALTER TABLE candidates ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
    """,
    # 4 -> 5: recipe search ([train.search]): every recipe a cycle trained, its figures,
    # and which one the cycle chose; kept after its generation is pruned.
    """
    CREATE TABLE recipes (
        id          INTEGER PRIMARY KEY,
        cycle_id    INTEGER NOT NULL,
        generation  INTEGER NOT NULL,       -- the challenger generation of the cycle
        idx         INTEGER NOT NULL,       -- 0 = the incumbent recipe, 1.. = proposals
        params      TEXT NOT NULL,          -- the searched values (learning_rate, max_steps, ...)
        figures     TEXT NOT NULL DEFAULT '{}',  -- held-out loss, pass@1, steps, seconds
        decision    TEXT,                   -- the gate's verdict on this recipe against the champion
        chosen      INTEGER NOT NULL DEFAULT 0,
        promoted    INTEGER NOT NULL DEFAULT 0,
        created_at  REAL NOT NULL,
        UNIQUE (cycle_id, idx)
    );
    """,
    # 5 -> 6: frontier growth ([frontier]): every step of every family (generation 0 and rounds), with its label
    # statistics (source, yield, the audited label accuracy), the gate's decision and accuracy by level.
    """
    CREATE TABLE frontier_steps (
        id          INTEGER PRIMARY KEY,
        family      TEXT NOT NULL,
        kind        TEXT NOT NULL,          -- gen0 | round
        round       INTEGER,                -- NULL for generation 0
        level       INTEGER,                -- the level the round labelled
        generation  INTEGER NOT NULL,       -- the champion after the step
        promoted    INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        result      TEXT NOT NULL,          -- the step's whole result (JSON)
        created_at  REAL NOT NULL
    );
    CREATE INDEX frontier_steps_family ON frontier_steps (family, id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
