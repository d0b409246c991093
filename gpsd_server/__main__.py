from gpsd_server.cli import main

raise SystemExit(main())
