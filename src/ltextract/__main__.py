from ltextract.cli import main

main()
