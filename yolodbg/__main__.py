from yolodbg.cli import main

main()
