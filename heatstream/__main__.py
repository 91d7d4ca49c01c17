from heatstream.cli import main

main()
