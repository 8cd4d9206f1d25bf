from montero_ops.cli import main

main()
