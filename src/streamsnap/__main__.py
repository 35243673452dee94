from streamsnap.cli import main

raise SystemExit(main())
