from framepack_api.cli import main

main()
