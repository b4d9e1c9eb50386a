from ops.main import main

main()
