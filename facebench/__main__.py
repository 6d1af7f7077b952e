from facebench.cli import main

raise SystemExit(main())
