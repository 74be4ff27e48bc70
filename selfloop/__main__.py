from selfloop.cli import main

raise SystemExit(main())
