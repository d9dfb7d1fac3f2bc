from landscape.cli.main import main

raise SystemExit(main())
