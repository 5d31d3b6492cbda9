package rowengine

import "github.com/rowfs/rowfs/blockmap"

type blockmapTxn = blockmap.Txn
