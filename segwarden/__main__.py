from segwarden.cli import main

main()
