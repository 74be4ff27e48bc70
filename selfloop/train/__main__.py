"""``python -m selfloop.train``: the training child (see ``selfloop.train.run``)."""

from selfloop.train.run import main

raise SystemExit(main())
