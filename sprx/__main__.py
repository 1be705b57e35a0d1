from sprx.cli import main

raise SystemExit(main())
