from tetrapipe.cli import main

main()
