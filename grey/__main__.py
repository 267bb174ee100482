from grey.cli import main

main()
